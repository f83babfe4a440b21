package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestSessionsCountedEveryHeartbeat: a simulation that starts is counted at
// the next collection (a booking confirms within one interval); a launcher
// that execs the simulator (its name changes) is counted once it does; an
// ended one is no longer counted.
func TestSessionsCountedEveryHeartbeat(t *testing.T) {
	root := t.TempDir()
	set := func(pid, comm string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := NewProcesses(root, []string{"webots-bin"})
	count := func() int {
		t.Helper()
		var r Reading
		if err := c.Collect(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
		return *r.Sessions
	}
	set("1", "systemd")
	set("100", "webots-bin")
	if n := count(); n != 1 {
		t.Fatalf("%d sessions, want 1", n)
	}
	set("200", "webots") // the launcher script
	if n := count(); n != 1 {
		t.Fatalf("with a launcher: %d sessions, want 1", n)
	}
	set("200", "webots-bin") // it execs the simulator
	if n := count(); n != 2 {
		t.Fatalf("after the exec: %d sessions, want 2", n)
	}
	if err := os.RemoveAll(filepath.Join(root, "100")); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("after one ended: %d sessions, want 1", n)
	}
}

// BenchmarkProcesses is one collection on this machine's /proc once its
// processes are known (the steady state: a heartbeat a second), against a
// full scan that reads every process's name:
// go test -run '^$' -bench Processes -benchmem ./internal/agent
func BenchmarkProcesses(b *testing.B) {
	b.Run("steady", func(b *testing.B) {
		c := NewProcesses("/proc", []string{"webots-bin"})
		var r Reading
		_ = c.Collect(context.Background(), &r)
		for b.Loop() {
			_ = c.Collect(context.Background(), &r)
		}
	})
	b.Run("baseline=full-scan", func(b *testing.B) {
		for b.Loop() {
			var r Reading
			_ = NewProcesses("/proc", []string{"webots-bin"}).Collect(context.Background(), &r)
		}
	})
}
