package alloc

import (
	"testing"
	"time"
)

// TestOccupied: the session-seconds run, summed from report to report over
// every server (the demand history's Little's law); a server that does not
// report its sessions, or a polled one, adds none.
func TestOccupied(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	r := New(Options{Servers: []string{"a/1", "b/1", "c/1"}, Threshold: 95})
	for _, rep := range []Report{
		{Server: "a/1", Sessions: 2, At: t0},
		{Server: "a/1", Sessions: 4, At: t0.Add(3 * time.Second)},   // 2 × 3 s
		{Server: "a/1", Sessions: 0, At: t0.Add(5 * time.Second)},   // 4 × 2 s
		{Server: "b/1", Sessions: 1, At: t0},                        //
		{Server: "b/1", Sessions: 1, At: t0.Add(10 * time.Second)},  // 1 × 10 s
		{Server: "c/1", Sessions: -1, At: t0},                       // not reported
		{Server: "c/1", Sessions: -1, At: t0.Add(10 * time.Second)}, //
		{Server: "c/1", Sessions: 3, At: t0.Add(20 * time.Second), Polled: true},
	} {
		rep.Status, rep.Interval = StatusUp, time.Second
		_ = r.Apply(rep)
	}
	if got := r.Occupied(); got != 24 {
		t.Errorf("occupied %v session-seconds, want 2×3 + 4×2 + 1×10 = 24", got)
	}
}
