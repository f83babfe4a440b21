package logging

import (
	"fmt"
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	th := NewThrottle(time.Minute, 3)
	steps := []struct {
		key  string
		at   time.Duration
		ok   bool
		held int
	}{
		{"a", 0, true, 0},            // the first line goes at once
		{"a", time.Second, false, 0}, // then held back…
		{"a", 59 * time.Second, false, 0},
		{"b", 2 * time.Second, true, 0},  // another key is its own
		{"a", 61 * time.Second, true, 2}, // …and counted in the next line
		{"c", 62 * time.Second, true, 0},
		{"d", 63 * time.Second, true, 0}, // past 3 keys: "other"
		{"e", 64 * time.Second, false, 0},
	}
	for i, s := range steps {
		held, ok := th.Allow(s.key, t0.Add(s.at))
		if ok != s.ok || held != s.held {
			t.Errorf("step %d (%s at %v): ok %v held %d, want %v %d", i, s.key, s.at, ok, held, s.ok, s.held)
		}
	}
	// A flood of distinct keys costs memory no longer than maxKeys.
	for i := range 10000 {
		th.Allow(fmt.Sprint(i), t0.Add(3*time.Minute))
	}
	if n := len(th.keys); n > 3 {
		t.Errorf("%d keys kept, want at most 3", n)
	}
}
