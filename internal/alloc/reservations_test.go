package alloc

import (
	"testing"
	"time"
)

// The ring keeps order across growth and wrap-around.
func TestPendingRing(t *testing.T) {
	var p pending
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Millisecond) }
	next, oldest := 0, 0
	for _, step := range []struct{ push, pop int }{{5, 3}, {20, 10}, {3, 12}, {40, 0}, {0, 43}} {
		for range step.push {
			p.push(at(next))
			next++
		}
		for range step.pop {
			if got := p.oldest(); !got.Equal(at(oldest)) {
				t.Fatalf("oldest = %v, want %v", got.Sub(t0), at(oldest).Sub(t0))
			}
			p.pop()
			oldest++
		}
		if p.len() != next-oldest {
			t.Fatalf("len = %d, want %d", p.len(), next-oldest)
		}
	}
}

// A flood of sessions between two heartbeats is bounded and stays O(1).
func TestReservationsBounded(t *testing.T) {
	var r reservations
	r.init()
	for i := range maxPending + 10 {
		r.add(t0.Add(time.Duration(i)), 0)
	}
	if r.at.len() != maxPending {
		t.Errorf("%d reservations kept, want %d", r.at.len(), maxPending)
	}
	rep := Report{Load: 10, Sessions: 0, Interval: time.Second, At: t0.Add(time.Hour)}
	r.observe(Report{Sessions: 0}, rep, 1)
	if r.at.len() != 0 || r.effective(rep) != 10 {
		t.Errorf("after settling: %d pending, effective %v", r.at.len(), r.effective(rep))
	}
}

// The per-session load is learnt from steady reports, not from ones whose
// average is still catching up with a change in the session count.
func TestPerSessionLearnt(t *testing.T) {
	var r reservations
	r.init()
	const prior = 1 // the agent's default maxSessions 100
	prev := Report{Sessions: 0}
	feed := func(from, to int, sessions int, load float64) {
		for s := from; s < to; s++ {
			rep := Report{Load: load, Sessions: sessions, Interval: time.Second, At: t0.Add(time.Duration(s) * time.Second)}
			r.observe(prev, rep, prior)
			prev = rep
		}
	}
	feed(0, 10, 0, 5)  // idle at 5 %
	feed(10, 12, 4, 9) // 4 sessions, the average still rising: not learnt from
	if r.learned {
		t.Fatal("learnt from a report that was still catching up")
	}
	feed(12, 40, 4, 25) // settled: 5 % each
	if r.perSession < 4.5 || r.perSession > 5.5 {
		t.Errorf("per-session load %.2f, want about 5", r.perSession)
	}
	rep := Report{Load: 25, Sessions: 4, Interval: time.Second, At: t0.Add(40 * time.Second)}
	r.add(rep.At, rep.Sessions)
	r.add(rep.At, rep.Sessions)
	if eff := r.effective(rep); eff < 34 || eff > 36 {
		t.Errorf("effective with two sessions reserved %.1f, want about 35", eff)
	}
}
