package history

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// sources is a coordinator's counters and farm, set by the test.
type sources struct {
	mu      sync.Mutex
	c       Counters
	servers []ServerSample
}

func (s *sources) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	c.Refused = map[string]uint64{}
	for k, v := range s.c.Refused {
		c.Refused[k] = v
	}
	c.Waits = append([]Bucket(nil), s.c.Waits...)
	return c
}

func (s *sources) Servers() ([]ServerSample, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ServerSample(nil), s.servers...), 95
}

func (s *sources) arrive(n int, placed, refused uint64, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.Visitors += uint64(n)
	s.c.Placed += placed
	if refused > 0 {
		if s.c.Refused == nil {
			s.c.Refused = map[string]uint64{}
		}
		s.c.Refused[reason] += refused
	}
}

// sink keeps what it is handed; while failing, it refuses.
type sink struct {
	mu      sync.Mutex
	kept    []Minute
	failing bool
}

func (k *sink) Publish(_ context.Context, m Minute) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failing {
		return errors.New("no quorum")
	}
	k.kept = append(k.kept, m)
	return nil
}

// TestRecorderKeepsEachMinute: arrivals land in their second, counts are
// the minute's own, the farm is sampled, and a minute the store refuses
// is kept later, not lost.
func TestRecorderKeepsEachMinute(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC) // half-way through a minute
	now := start
	src := &sources{servers: []ServerSample{
		{Load: 10, Sessions: 0, Interval: time.Second},
		{Load: 44, Sessions: 2, Interval: time.Second, MaxSessions: 5},
		{Load: 95, Sessions: 5, Full: true, Interval: time.Second, MaxSessions: 5},
	}}
	store := &sink{failing: true}
	r := NewRecorder(Options{Member: "m1", Sources: src, Sink: store, Now: func() time.Time { return now }})
	for s := 1; s <= 89; s++ { // to 10:01:59
		now = start.Add(time.Duration(s) * time.Second)
		src.mu.Lock()
		src.c.Occupied += 7 // seven sessions running
		src.mu.Unlock()
		if s == 10 {
			src.arrive(3, 2, 1, "full")
		}
		if s == 40 { // 10:01:10
			src.arrive(1, 0, 1, "line-full")
		}
		r.Tick(now)
		r.keep(context.Background())
	}
	if len(store.kept) != 0 {
		t.Fatalf("kept while the store refuses: %+v", store.kept)
	}
	cur := r.Current()
	if len(cur) != 2 {
		t.Fatalf("current: %d minutes, want the one unkept and the one in progress", len(cur))
	}
	store.mu.Lock()
	store.failing = false
	store.mu.Unlock()
	r.keep(context.Background())
	if len(store.kept) != 1 {
		t.Fatalf("kept %d minutes once the store is back, want 1", len(store.kept))
	}
	m := store.kept[0]
	if !m.Start.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) || m.From != 30 || m.To != 60 {
		t.Errorf("minute %v [%d, %d)", m.Start, m.From, m.To)
	}
	if m.Arrivals[40] != 3 || m.Visitors() != 3 || m.Placed != 2 || m.Refused["full"] != 1 || m.TurnedAway() != 1 {
		t.Errorf("counts: arrivals[40]=%d visitors %d placed %d refused %v", m.Arrivals[40], m.Visitors(), m.Placed, m.Refused)
	}
	f := m.Farm
	if f.Occupancy != 7*30 {
		t.Errorf("occupancy %v session-seconds, want 210", f.Occupancy)
	}
	if f.Samples != 29 || f.Servers != 87 || f.Full != 29 || f.Sessions != 7*29 || f.Reporting != 58 || f.First != 7 || f.Last != 7 {
		t.Errorf("farm: %+v", f)
	}
	if base, slope, ok := f.Fit.Line(); !ok || base < 9.9 || base > 10.1 || slope < 16.9 || slope > 17.1 {
		t.Errorf("fit: load = %.2f + %.2f × sessions (ok %v), want 10 + 17", base, slope, ok)
	}
	next := r.Current()
	if len(next) != 1 || next[0].Arrivals[10] != 1 || next[0].Refused["line-full"] != 1 || next[0].Placed != 0 {
		t.Errorf("the minute in progress: %+v", next)
	}
}

// TestP95 reads the percentile off cumulative buckets, between two reads.
func TestP95(t *testing.T) {
	b := func(counts ...uint64) []Bucket {
		var out []Bucket
		for i, c := range counts {
			out = append(out, Bucket{Le: float64(10 * (i + 1)), Count: c})
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		now, before []Bucket
		want        float64
	}{
		{"none", nil, nil, 0},
		{"no wait in between", b(5, 5, 5), b(5, 5, 5), 0},
		{"all short", b(100, 100, 100), nil, 10},
		{"a long tail", b(90, 96, 100), nil, 20},
		{"since the last read", b(100, 100, 120), b(100, 100, 100), 30},
	} {
		if got := p95(tc.now, tc.before); got != tc.want {
			t.Errorf("%s: p95 %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestMerge: members' minutes add up; one member's minute read twice
// counts once; the farm is one member's view.
func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	min := func(member string, at time.Time, visitors uint32, placed uint64, samples int, from int) Minute {
		m := Minute{V: Version, Member: member, Start: at, From: from, To: 60, Arrivals: make([]uint32, 60), Placed: placed,
			Refused: map[string]uint64{"full": 1}, Farm: Farm{Samples: samples, Servers: float64(samples)}}
		m.Arrivals[5] = visitors
		return m
	}
	got := Merge([]Minute{
		min("a", t0.Add(time.Minute), 1, 1, 60, 0),
		min("a", t0, 2, 2, 30, 30),
		min("b", t0, 3, 3, 60, 0),
		min("a", t0, 2, 2, 20, 30), // a's first minute, read before it was over
	})
	if len(got) != 2 || !got[0].Start.Equal(t0) {
		t.Fatalf("merged: %+v", got)
	}
	restarted := Merge([]Minute{min("a", t0, 2, 2, 30, 0), min("a", t0, 4, 4, 30, 30)})
	if len(restarted) != 1 || restarted[0].Placed != 6 || restarted[0].Arrivals[5] != 6 {
		t.Errorf("a member restarted within a minute: %+v, want both parts counted", restarted)
	}
	m := got[0]
	if m.Arrivals[5] != 5 || m.Placed != 5 || m.Refused["full"] != 2 || m.Farm.Samples != 60 || m.From != 0 || m.To != 60 {
		t.Errorf("merged minute: arrivals %d placed %d refused %v farm %+v [%d, %d)", m.Arrivals[5], m.Placed, m.Refused, m.Farm, m.From, m.To)
	}
}

// TestPlot: minutes land in their step; the mean session length is
// Little's; a step with nothing is zero.
func TestPlot(t *testing.T) {
	end := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	m := Minute{V: Version, Start: end.Add(-30 * time.Minute), To: 60, Arrivals: make([]uint32, 60), Placed: 10, Seated: 2,
		Refused: map[string]uint64{"full": 3}, WaitP95: 20,
		Farm: Farm{Samples: 60, Servers: 120, Sessions: 600, Occupancy: 600}}
	m.Arrivals[0] = 15
	old := m
	old.Start = end.Add(-25 * time.Hour) // outside the day
	p := Plot([]Minute{m, old}, end, 24*time.Hour, 15*time.Minute)
	if len(p) != 96 {
		t.Fatalf("%d steps", len(p))
	}
	var hit *Point
	for i := range p {
		if p[i].Visitors > 0 {
			if hit != nil {
				t.Fatalf("two steps hold the minute")
			}
			hit = &p[i]
		}
	}
	if hit == nil || hit.Visitors != 15 || hit.Refused != 3 || hit.Servers != 2 || hit.Sessions != 10 || hit.MeanLength != 50 || hit.WaitP95 != 20 {
		t.Errorf("step: %+v", hit)
	}
	if last := p[len(p)-1].Start; last.After(end) || !last.Add(15*time.Minute).After(end) {
		t.Errorf("the last step %v does not hold the end %v", p[len(p)-1].Start, end)
	}
}
