package state

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreSetAsideOnlyAfterRepeatedDeaths: issue 30. One start that died
// opening the store (a kill -9 in its window) leaves the store as it is;
// a second in a row sets it aside, and the ERROR says what comes back by
// itself: in a cluster, the other members' copies.
func TestStoreSetAsideOnlyAfterRepeatedDeaths(t *testing.T) {
	for _, tc := range []struct {
		name      string
		marker    string // "" for none
		clustered bool
		aside     bool
		want      string // in the log
	}{
		{"a clean start", "", false, false, ""},
		{"one died start (an older marker)", "start at 2026-12-03T08:00:00Z, pid 7\n", false, false, "opening it again"},
		{"one died start", "start at 2026-12-03T08:00:00Z, pid 7, died before: 0\n", true, false, "opening it again"},
		{"two in a row, alone", "start at 2026-12-03T08:00:00Z, pid 7, died before: 1\n", false, true, "make the drains again"},
		{"two in a row, in a cluster", "start at 2026-12-03T08:00:00Z, pid 7, died before: 1\n", true, true, "the other members give them back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, jetstreamDir), 0o750); err != nil {
				t.Fatal(err)
			}
			if tc.marker != "" {
				if err := os.WriteFile(filepath.Join(dir, markerFile), []byte(tc.marker), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			var logs strings.Builder
			s, err := Guard(dir, tc.clustered, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			_, statErr := os.Stat(filepath.Join(dir, jetstreamDir))
			if aside := os.IsNotExist(statErr); aside != tc.aside {
				t.Errorf("set aside: %v, want %v; log: %s", aside, tc.aside, logs.String())
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("log %q lacks %q", logs.String(), tc.want)
			}
			marker, _ := os.ReadFile(filepath.Join(dir, markerFile))
			wantDied := "died before: 0"
			if tc.marker != "" && !tc.aside {
				wantDied = "died before: 1"
			}
			if !strings.Contains(string(marker), wantDied) {
				t.Errorf("marker %q, want %q", marker, wantDied)
			}
			s.Done()
			if _, err := os.Stat(filepath.Join(dir, markerFile)); !os.IsNotExist(err) {
				t.Errorf("marker left after Done: %v", err)
			}
		})
	}
}
