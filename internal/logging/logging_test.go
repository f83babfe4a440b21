package logging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/natefinch/lumberjack.v2"
)

// TestFullDiskLinesReachStandardError: a line the log file refuses (a full
// disk: /dev/full answers every write with ENOSPC) is written to the
// fallback, standard error in production, with the reason.
func TestFullDiskLinesReachStandardError(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	path := filepath.Join(t.TempDir(), "output.log")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	var fallback strings.Builder
	r := &rotator{lj: &lumberjack.Logger{Filename: path, MaxSize: 1}, max: MaxBytes, fallback: &fallback}
	defer r.Close()
	if _, err := r.Write([]byte("level=ERROR msg=\"mail abandoned\"\n")); err == nil {
		t.Fatal("a write to /dev/full succeeded")
	}
	if got := fallback.String(); !strings.Contains(got, "no space left on device") || !strings.Contains(got, "mail abandoned") {
		t.Errorf("standard error got %q, want the line and the reason", got)
	}
}
