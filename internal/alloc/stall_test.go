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
