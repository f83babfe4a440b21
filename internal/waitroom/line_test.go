package waitroom

import (
	"fmt"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// farm is a real registry on a clock the test moves, with one server.
type farm struct {
	reg *alloc.Registry
	now time.Time
}

const server1 = "127.0.0.1:2000"

func newFarm(t *testing.T) *farm {
	t.Helper()
	f := &farm{now: time.Unix(1_800_000_000, 0)}
	f.reg = alloc.New(alloc.Options{Servers: []string{server1}, Threshold: 95, Seed: 1, Now: func() time.Time { return f.now }})
	f.report(99, 0)
	return f
}

// report is a heartbeat: 5 % a session (maxSessions 20).
func (f *farm) report(load float64, sessions int) {
	if err := f.reg.Apply(alloc.Report{Server: server1, Status: alloc.StatusUp, Load: load, Sessions: sessions,
		MaxSessions: 20, Interval: time.Second, At: f.now}); err != nil {
		panic(err)
	}
}

func (f *farm) line(o Options) *Line {
	o.Seats = f.reg
	o.Now = func() time.Time { return f.now }
	return New(o)
}

// join gives a visitor of addr a ticket, opens it and starts it.
func join(t *testing.T, l *Line, addr string) *Waiter {
	t.Helper()
	ticket, ok := l.Issue(alloc.Visitor{Addr: addr})
	if !ok {
		t.Fatalf("no ticket for %s", addr)
	}
	w, ok := l.Open(ticket)
	if !ok {
		t.Fatal("ticket does not open")
	}
	l.Start(w)
	return w
}

func places(l *Line, ws ...*Waiter) []int {
	var out []int
	for _, w := range ws {
		p, _, _ := l.Position(w)
		out = append(out, p)
	}
	return out
}

func seated(w *Waiter) string {
	select {
	case s := <-w.Seat():
		return s
	default:
		return ""
	}
}

func TestFirstComeFirstServed(t *testing.T) {
	f := newFarm(t)
	l := f.line(Options{})
	a, b, c := join(t, l, "a"), join(t, l, "b"), join(t, l, "c")
	if got := places(l, a, b, c); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("places %v", got)
	}
	l.Leave(a)
	if got := places(l, b, c); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("after the first left: %v", got)
	}
	select {
	case <-b.Changed():
	default:
		t.Error("b was not told its place moved")
	}
	f.report(90, 0) // one seat
	l.Pass(false)
	if s := seated(b); s != server1 {
		t.Fatalf("the first in line was not seated (%q)", s)
	}
	if s := seated(c); s != "" {
		t.Fatalf("the second was seated on the one seat too")
	}
	if got := places(l, c); got[0] != 1 || l.Len() != 1 {
		t.Fatalf("c at %v, %d waiting", got, l.Len())
	}
}

func TestNotStartedIsPassedOver(t *testing.T) {
	f := newFarm(t)
	l := f.line(Options{})
	ticket, _ := l.Issue(alloc.Visitor{Addr: "slow"})
	b := join(t, l, "b")
	f.report(90, 0)
	l.Pass(false)
	if seated(b) != server1 {
		t.Fatal("a waiter that started was held behind one whose socket has not come")
	}
	if _, ok := l.Open(ticket); !ok {
		t.Fatal("the slow visitor lost its ticket")
	}
}

func TestTicketsAreUsedOnce(t *testing.T) {
	f := newFarm(t)
	l := f.line(Options{})
	ticket, _ := l.Issue(alloc.Visitor{Addr: "a"})
	for i, want := range []bool{true, false} {
		if _, ok := l.Open(ticket); ok != want {
			t.Errorf("open %d: %v", i, ok)
		}
	}
	if _, ok := l.Open("0123456789abcdef0123456789abcdef"); ok {
		t.Error("a forged ticket opened")
	}
	if len(ticket) != 32 {
		t.Errorf("ticket %q: want 128 bits in hex", ticket)
	}
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name            string
		max, perAddress int
		addrs           []string
		want            []bool
	}{
		{"line full", 2, 2, []string{"a", "b", "c"}, []bool{true, true, false}},
		{"address full", 10, 2, []string{"a", "a", "a", "b"}, []bool{true, true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFarm(t).line(Options{Max: tc.max, PerAddress: tc.perAddress})
			for i, addr := range tc.addrs {
				if _, ok := l.Issue(alloc.Visitor{Addr: addr}); ok != tc.want[i] {
					t.Errorf("ticket %d for %s: %v, want %v", i, addr, ok, tc.want[i])
				}
			}
		})
	}
}

func TestSweep(t *testing.T) {
	for _, tc := range []struct {
		name  string
		open  bool
		after time.Duration
		down  bool
		want  Reason
	}{
		{"a ticket never opened lapses", false, TicketTTL, false, Lapsed},
		{"a long wait ends", true, time.Minute, false, GaveUp},
		{"no server that would take it is up", true, time.Second, true, NoServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFarm(t)
			var left []Reason
			l := f.line(Options{MaxWait: time.Minute, Left: func(r Reason) { left = append(left, r) }})
			ticket, _ := l.Issue(alloc.Visitor{Addr: "a"})
			var w *Waiter
			if tc.open {
				w, _ = l.Open(ticket)
				l.Start(w)
			}
			f.now = f.now.Add(tc.after)
			if tc.down {
				if err := f.reg.Apply(alloc.Report{Server: server1, Status: alloc.StatusLeaving, Interval: time.Second, At: f.now}); err != nil {
					t.Fatal(err)
				}
			} else {
				f.report(99, 0) // still full, still heard
			}
			l.Sweep()
			if l.Len() != 0 || len(left) != 1 || left[0] != tc.want {
				t.Fatalf("%d waiting, left %v, want %v", l.Len(), left, tc.want)
			}
			if w != nil {
				if why := <-w.Out(); why != tc.want {
					t.Errorf("told %v", why)
				}
			}
		})
	}
}

func TestRequeueKeepsThePlace(t *testing.T) {
	f := newFarm(t)
	l := f.line(Options{})
	a := join(t, l, "a")
	f.now = f.now.Add(time.Second)
	b := join(t, l, "b")
	f.report(90, 0)
	l.Pass(false)
	if seated(a) != server1 {
		t.Fatal("a not seated")
	}
	l.Taken(a)
	if l.Len() != 1 {
		t.Fatalf("%d waiting once a took its seat", l.Len())
	}
	if !l.Requeue(a) {
		t.Fatal("requeue refused")
	}
	if got := places(l, a, b); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("after requeue: %v", got)
	}
}

func TestEstimate(t *testing.T) {
	f := newFarm(t)
	l := f.line(Options{})
	w := join(t, l, "a")
	if _, _, known := l.Position(w); known {
		t.Fatal("an estimate before any session ended")
	}
	// 10 sessions running, one ending every 6 s and a visitor placed in
	// its stead: 60 s each.
	for i := range 200 {
		f.now = f.now.Add(time.Second)
		sessions := 10
		if i%6 == 5 {
			sessions = 9
		}
		f.report(50, sessions)
		if sessions == 9 {
			if _, ok := f.reg.Place(alloc.Visitor{}); !ok {
				t.Fatal("no room")
			}
		}
	}
	place, eta, known := l.Position(w)
	if !known {
		t.Fatal("no estimate after 30 sessions ended")
	}
	// One end every ~6 s: place 1 waits about 6 s.
	if place != 1 || eta < 3*time.Second || eta > 12*time.Second {
		t.Errorf("place %d, expected wait %v, want about 6 s", place, eta)
	}
}
