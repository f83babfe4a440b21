package alloc

import (
	"testing"
	"time"
)

// TestStalled: a sweep 100 ms after the last is normal; a long gap on the
// monotonic clock (a stall) or on the wall clock (a jump either way) is not.
func TestStalled(t *testing.T) {
	last := time.Now()
	for _, tc := range []struct {
		name string
		now  time.Time
		want bool
	}{
		{"the next sweep", last.Add(100 * time.Millisecond), false},
		{"a loaded machine's late sweep", last.Add(time.Second), false},
		{"a stall of 95 s", last.Add(95 * time.Second), true},
		{"the wall clock jumped ahead", last.Add(100 * time.Millisecond).Round(0).Add(time.Minute), true},
		{"the wall clock went back", last.Add(100 * time.Millisecond).Round(0).Add(-time.Minute), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, got := stalled(last, tc.now); got != tc.want {
				t.Errorf("stalled = %v, want %v", got, tc.want)
			}
		})
	}
	if _, _, got := stalled(time.Time{}, last); got {
		t.Error("the first sweep is no stall")
	}
}

// TestStallGrace: back from a stall, a coordinator judges no server's
// silence before StallGrace, though its timeout is shorter: a cluster
// member's routes must be made again before the heartbeats of the agents
// that failed over meanwhile reach it (three false downs at 600 ms on a
// loaded machine). A server still silent after it goes down.
func TestStallGrace(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	r := New(Options{Servers: []string{"a/1"}, Threshold: 95, Timeout: 600 * time.Millisecond})
	r.Open()
	if err := r.Apply(Report{Server: "a/1", Status: StatusUp, Load: 10, Sessions: 0, Interval: 200 * time.Millisecond, At: t0}); err != nil {
		t.Fatal(err)
	}
	back := t0.Add(9 * time.Second) // SIGCONT after 9 s
	r.graceFor(back, StallGrace)
	for _, tc := range []struct {
		after time.Duration
		want  State
	}{
		{time.Second, Up},
		{StallGrace - 100*time.Millisecond, Up},
		{StallGrace + 100*time.Millisecond, Down},
	} {
		r.Sweep(back.Add(tc.after))
		if got := r.Snapshot()[0].State; got != tc.want {
			t.Errorf("%v after the stall: %v, want %v", tc.after, got, tc.want)
		}
	}
}
