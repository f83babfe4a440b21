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

// TestBudgetBoundsEveryThrottle: throttles sharing a budget write at most
// FloodLines + KnownLines lines in any minute in all, however many kinds
// and sources flood them, and a known source's lines keep their own share.
func TestBudgetBoundsEveryThrottle(t *testing.T) {
	b := NewBudget()
	kinds := []*Throttle{
		NewThrottle(time.Minute, ClientKeys).Within(b),
		NewThrottle(time.Minute, ClientKeys).Within(b),
		NewThrottle(time.Minute, ClientKeys).Within(b),
	}
	start := time.Unix(1_800_000_000, 0)
	written := map[int]int{} // lines by the minute they went in
	known := 0
	for s := 0; s < 180; s++ { // three minutes, a flood every second
		now := start.Add(time.Duration(s) * time.Second)
		for i, th := range kinds {
			for k := range 50 {
				if _, ok := th.Allow(fmt.Sprintf("flood %d %d", s, k), now); ok {
					written[s]++
				}
			}
			if _, ok := th.AllowKnown(fmt.Sprintf("configured %d", i), now); ok {
				written[s]++
				known++
			}
		}
	}
	for s := range 120 {
		in := 0
		for d := range 60 {
			in += written[s+d]
		}
		if in > FloodLines+KnownLines {
			t.Fatalf("%d lines in the minute from second %d, want at most %d", in, s, FloodLines+KnownLines)
		}
	}
	// Each configured source has a line a minute (its key's period).
	if known < 3*3 {
		t.Errorf("the configured sources got %d lines in 3 minutes, want at least 9", known)
	}
}
