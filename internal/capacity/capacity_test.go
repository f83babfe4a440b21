package capacity

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/history"
)

// record is a farm's history: servers alike (load 10 + 17 per session),
// Poisson arrivals at rate a second for minutes, sessions of mean length.
func record(servers int, rate float64, minutes int, length time.Duration) []history.Minute {
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	out := make([]history.Minute, minutes)
	for i := range out {
		m := history.Minute{V: history.Version, Member: "a", Start: t0.Add(time.Duration(i) * time.Minute), To: 60, Arrivals: make([]uint32, 60)}
		var visitors uint64
		for s := range m.Arrivals {
			for x := rng.ExpFloat64() / rate; x < 1; x += rng.ExpFloat64() / rate {
				m.Arrivals[s]++
				visitors++
			}
		}
		m.Placed = visitors
		running := rate * length.Seconds() // every visitor placed: a farm large enough
		f := history.Farm{Samples: 60, Servers: float64(60 * servers), Occupancy: running * 60, Sessions: running * 60,
			First: running, Last: running, Threshold: 95, Interval: float64(60 * servers), MaxSessions: float64(60 * 5 * servers), Reporting: float64(60 * servers)}
		for n := range 6 {
			for range 10 * servers {
				f.Fit.Add(float64(n), 10+17*float64(n))
			}
		}
		m.Farm = f
		out[i] = m
	}
	return out
}

// TestFit: the model is what the history says.
func TestFit(t *testing.T) {
	hist := record(4, 2, 10, 5*time.Second)
	m, d, err := Fit(hist, hist[0].Start, hist[len(hist)-1].Start.Add(time.Minute), Queue{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Servers != 4 || m.Seats() != 5 || m.Threshold != 95 || m.MaxSessions != 5 || m.Interval != time.Second {
		t.Errorf("model %+v (seats %d)", m, m.Seats())
	}
	if m.Base < 9.99 || m.Base > 10.01 || m.PerSession < 16.99 || m.PerSession > 17.01 {
		t.Errorf("load = %.3f + %.3f × sessions, want 10 + 17", m.Base, m.PerSession)
	}
	if l := m.MeanLength.Seconds(); l < 4.5 || l > 5.5 {
		t.Errorf("mean length %.2f s, want about 5", l)
	}
	var visitors uint64
	for _, r := range hist {
		visitors += r.Visitors()
	}
	if len(d.Arrivals) != 600 || d.Visitors() != visitors {
		t.Errorf("demand: %d seconds, %d visitors; want 600 and %d", len(d.Arrivals), d.Visitors(), visitors)
	}
	for _, tc := range []struct {
		name string
		hist []history.Minute
	}{
		{"nothing", nil},
		{"no session ever ran", func() []history.Minute {
			h := record(2, 1, 2, time.Second)
			for i := range h {
				h[i].Farm.Occupancy, h[i].Farm.Fit = 0, history.Fit{}
			}
			return h
		}()},
		{"no server seen", func() []history.Minute {
			h := record(2, 1, 2, time.Second)
			for i := range h {
				h[i].Farm = history.Farm{}
			}
			return h
		}()},
	} {
		if _, _, err := Fit(tc.hist, time.Time{}, time.Now(), Queue{}); err != ErrTooLittle {
			t.Errorf("%s: %v, want ErrTooLittle", tc.name, err)
		}
	}
}

// TestReplay: the real registry on simulated time turns away fewer
// visitors the more servers it has, none when the farm is large enough;
// a replay is the same for the same seed; the waiting room seats those
// a full farm would have turned away, within queue.maxWait.
func TestReplay(t *testing.T) {
	hist := record(6, 25, 5, 2*time.Second) // 50 sessions at once, on 30 seats
	m, d, err := Fit(hist, hist[0].Start, hist[len(hist)-1].Start.Add(time.Minute), Queue{})
	if err != nil {
		t.Fatal(err)
	}
	m.Interval = 250 * time.Millisecond
	prev := d.Visitors() + 1
	for _, servers := range []int{4, 6, 8, 12, 20} {
		o := Replay(m, d, servers, 1)
		if o.Placed+o.Refused != o.Visitors || o.Visitors != d.Visitors() {
			t.Errorf("%v: placed and turned away do not add up to the visitors", o)
		}
		if o.Refused >= prev {
			t.Errorf("%v: not fewer turned away than with fewer servers (%d)", o, prev)
		}
		prev = o.Refused
		t.Log(o)
	}
	if prev > d.Visitors()/100 {
		t.Errorf("20 servers (100 seats for 50 sessions) turned away %d of %d", prev, d.Visitors())
	}
	if a, b := Replay(m, d, 6, 7), Replay(m, d, 6, 7); a.Refused != b.Refused || a.Placed != b.Placed {
		t.Errorf("the same seed, two outcomes: %v and %v", a, b)
	}
	m.Queue = Queue{Enabled: true, Max: 1000, MaxWait: 30 * time.Second}
	o := Replay(m, d, 6, 1)
	if o.Seated == 0 || o.WaitP95 > 30 || o.WaitMean <= 0 || o.WaitMean > o.WaitP95 {
		t.Errorf("with the waiting room: %v (mean wait %.1f s)", o, o.WaitMean)
	}
	if o.Placed+o.Seated+o.Refused+o.Waiting != o.Visitors {
		t.Errorf("with the waiting room: %+v does not add up", o)
	}
	for reason := range o.ByReason {
		if reason != "waited-too-long" && reason != "line-full" {
			t.Errorf("with the waiting room, turned away as %q", reason)
		}
	}
}

// TestPlannerComputesInTheBackground: the first document has the plots
// and says a what-if is being made; a later one has it.
func TestPlannerComputesInTheBackground(t *testing.T) {
	hist := record(6, 25, 5, 2*time.Second)
	now := hist[len(hist)-1].Start.Add(time.Minute)
	made := make(chan struct{}, 1)
	p := NewPlanner(PlannerOptions{Reps: 2, Now: func() time.Time { return now },
		Read: func(context.Context, time.Time) ([]history.Minute, error) { return hist, nil },
		Made: func(*WhatIfDoc) { made <- struct{}{} }})
	var d Doc
	doc, brief := p.Document(context.Background())
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Day) != 96 || len(d.Week) != 168 || (!d.Computing && d.WhatIf == nil) {
		t.Fatalf("first document: %d and %d steps, computing %v", len(d.Day), len(d.Week), d.Computing)
	}
	if len(brief) >= len(doc) {
		t.Errorf("the brief document (%d bytes) is not shorter than the full one (%d)", len(brief), len(doc))
	}
	select {
	case <-made:
	case <-time.After(30 * time.Second):
		t.Fatal("no what-if within 30 s")
	}
	doc, _ = p.Document(context.Background()) // made anew: the what-if is new
	d = Doc{}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	if d.Computing || d.WhatIf == nil {
		t.Fatalf("after the what-if was made: computing %v, what-if %v", d.Computing, d.WhatIf)
	}
	w := d.WhatIf
	if w.Error != "" || len(w.Rows) != 8 || w.Rows[0].K != -2 || w.Rows[7].K != 5 || w.Seats != 5 {
		t.Fatalf("what-if: %+v", w)
	}
	for i := 1; i < len(w.Rows); i++ {
		if w.Rows[i].Refused > w.Rows[i-1].Refused {
			t.Errorf("k=%d turns away more than k=%d: %d > %d", w.Rows[i].K, w.Rows[i-1].K, w.Rows[i].Refused, w.Rows[i-1].Refused)
		}
	}
	if len(brief) > 3500 {
		t.Errorf("the brief document is %d bytes: over a NATS answer", len(brief))
	}
}
