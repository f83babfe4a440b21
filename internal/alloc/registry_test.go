package alloc

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func report(server string, load float64) Report {
	return Report{Server: server, Status: StatusUp, Load: load, Sessions: -1, MaxSessions: 100, Interval: time.Second, At: t0}
}

func newReg(t *testing.T, servers ...string) (*Registry, *[]Change) {
	t.Helper()
	var mu sync.Mutex
	changes := &[]Change{}
	r := New(Options{Servers: servers, Threshold: 95, Seed: 1, OnChange: func(c Change) {
		mu.Lock()
		*changes = append(*changes, c)
		mu.Unlock()
	}})
	return r, changes
}

func TestLeastLoadedWins(t *testing.T) {
	r, _ := newReg(t, "a/1", "b/1", "c/1")
	for s, l := range map[string]float64{"a/1": 50, "b/1": 10, "c/1": 30} {
		if err := r.Apply(report(s, l)); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok := r.Place(Visitor{}); !ok || got != "b/1" {
		t.Errorf("Place = %q, %v; want b/1", got, ok)
	}
}

func TestStatesNeverPlaced(t *testing.T) {
	tests := []struct {
		name  string
		rep   func(Report) Report
		state State
	}{
		{"full at exactly the threshold", func(r Report) Report { r.Load = 95; return r }, Full},
		{"full above", func(r Report) Report { r.Load = 99.9; return r }, Full},
		{"draining", func(r Report) Report { r.Status = StatusDraining; return r }, Draining},
		{"service down", func(r Report) Report { r.Status = StatusServiceDown; return r }, Down},
		{"leaving", func(r Report) Report { r.Status = StatusLeaving; return r }, Down},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newReg(t, "a/1")
			if err := r.Apply(tt.rep(report("a/1", 10))); err != nil {
				t.Fatal(err)
			}
			if s := r.Snapshot()[0].State; s != tt.state {
				t.Errorf("state %v, want %v", s, tt.state)
			}
			if got, ok := r.Place(Visitor{}); ok {
				t.Errorf("placed on %q", got)
			}
			if r.Available() {
				t.Error("available")
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		r, _ := newReg(t, "a/1")
		if _, ok := r.Place(Visitor{}); ok || r.Snapshot()[0].State != Unknown {
			t.Error("a server never heard from must be unknown and never placed")
		}
	})
	t.Run("just below the threshold is up", func(t *testing.T) {
		r, _ := newReg(t, "a/1")
		_ = r.Apply(report("a/1", 94.99))
		if _, ok := r.Place(Visitor{}); !ok {
			t.Error("94.99 must be placeable")
		}
	})
}

func TestBurstIsSpread(t *testing.T) {
	var servers []string
	for i := 0; i < 10; i++ {
		servers = append(servers, fmt.Sprintf("s%d/2000", i))
	}
	r, _ := newReg(t, servers...)
	for _, s := range servers {
		_ = r.Apply(report(s, 20))
	}
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, ok := r.Place(Visitor{})
			if !ok {
				t.Error("no server")
				return
			}
			mu.Lock()
			counts[s]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(counts) != 10 {
		t.Errorf("used %d servers, want 10: %v", len(counts), counts)
	}
	for s, n := range counts {
		if n > 15 {
			t.Errorf("%s got %d sessions, more than 15", s, n)
		}
	}
}

func TestTiesBrokenRandomly(t *testing.T) {
	first := map[string]bool{}
	for seed := uint64(1); seed <= 40; seed++ {
		r := New(Options{Servers: []string{"a/1", "b/1", "c/1"}, Threshold: 95, Seed: seed})
		for _, s := range []string{"a/1", "b/1", "c/1"} {
			_ = r.Apply(report(s, 10))
		}
		s, _ := r.Place(Visitor{})
		first[s] = true
	}
	if len(first) != 3 {
		t.Errorf("equal servers chosen first: %v; want all three over 40 seeds", first)
	}
}

func TestUnknownServerRefused(t *testing.T) {
	r, _ := newReg(t, "a/1")
	if err := r.Apply(report("x/1", 1)); err == nil {
		t.Fatal("a server outside simulationServers must be refused")
	}
	if len(r.Snapshot()) != 1 {
		t.Error("registry changed")
	}
	open, _ := newReg(t)
	if err := open.Apply(report("x/1", 1)); err != nil || len(open.Snapshot()) != 1 {
		t.Errorf("with no list, any server is added: %v", err)
	}
}

func TestSilenceAndConnectionLoss(t *testing.T) {
	r, changes := newReg(t, "a/1", "b/1")
	_ = r.Apply(report("a/1", 10))
	_ = r.Apply(report("b/1", 10))
	r.Sweep(t0.Add(2 * time.Second)) // one missed heartbeat, even two
	if s := r.Snapshot(); s[0].State != Up || s[1].State != Up {
		t.Fatalf("one missed heartbeat must not make a server down: %v %v", s[0].State, s[1].State)
	}
	r.Sweep(t0.Add(3*time.Second + time.Millisecond))
	if s := r.Snapshot(); s[0].State != Down {
		t.Errorf("silent past 3 intervals: %v", s[0].State)
	}
	r2, _ := newReg(t, "a/1")
	_ = r2.Apply(report("a/1", 10))
	r2.ConnectionLost("a/1")
	if s := r2.Snapshot()[0]; s.State != Down || s.Reason == "" {
		t.Errorf("connection lost: %+v", s)
	}
	r2.ConnectionLost("nobody") // ignored
	_ = r2.Apply(report("a/1", 10))
	if r2.Snapshot()[0].State != Up {
		t.Error("a heartbeat brings it back")
	}
	if len(*changes) == 0 || (*changes)[0].From != Unknown || (*changes)[0].To != Up {
		t.Errorf("changes: %+v", *changes)
	}
}

func TestConfiguredTimeout(t *testing.T) {
	r := New(Options{Servers: []string{"a/1"}, Threshold: 95, Timeout: 10 * time.Second})
	_ = r.Apply(report("a/1", 10))
	r.Sweep(t0.Add(9 * time.Second))
	if r.Snapshot()[0].State != Up {
		t.Fatal("down before heartbeatTimeout")
	}
	r.Sweep(t0.Add(11 * time.Second))
	if r.Snapshot()[0].State != Down {
		t.Fatal("not down after heartbeatTimeout")
	}
}

func TestAvailabilitySignal(t *testing.T) {
	r, _ := newReg(t, "a/1")
	ch := r.AvailabilityChanged()
	_ = r.Apply(report("a/1", 10))
	select {
	case <-ch:
	default:
		t.Fatal("no signal when availability rose")
	}
	if !r.Available() {
		t.Fatal("not available")
	}
	ch = r.AvailabilityChanged()
	_ = r.Apply(report("a/1", 96))
	select {
	case <-ch:
	default:
		t.Fatal("no signal when availability fell")
	}
	if r.Available() {
		t.Fatal("still available")
	}
}

func TestMeanLoad(t *testing.T) {
	r, _ := newReg(t, "a/1", "b/1", "c/1")
	if _, ok := r.MeanLoad(); ok {
		t.Error("mean with no server up")
	}
	_ = r.Apply(report("a/1", 30))
	_ = r.Apply(report("b/1", 96))
	if m, ok := r.MeanLoad(); !ok || m != 63 {
		t.Errorf("mean = %v, %v; want 63 (up and full count, unknown does not)", m, ok)
	}
}

func TestChangesInOrder(t *testing.T) {
	r, changes := newReg(t, "a/1")
	_ = r.Apply(report("a/1", 10))
	_ = r.Apply(report("a/1", 99))
	_ = r.Apply(report("a/1", 10))
	leave := report("a/1", 10)
	leave.Status = StatusLeaving
	_ = r.Apply(leave)
	want := []struct{ from, to State }{{Unknown, Up}, {Up, Full}, {Full, Up}, {Up, Down}}
	if len(*changes) != len(want) {
		t.Fatalf("changes %+v", *changes)
	}
	for i, w := range want {
		if c := (*changes)[i]; c.From != w.from || c.To != w.to {
			t.Errorf("change %d: %v→%v, want %v→%v", i, c.From, c.To, w.from, w.to)
		}
	}
}

// TestOpenRegistryTakesOnlyAllowedEntries: with users bound to servers and
// no simulationServers, a look-alike entry on the same subject token is
// refused; the bound one is added when it reports.
func TestOpenRegistryTakesOnlyAllowedEntries(t *testing.T) {
	r := New(Options{Threshold: 95, Allowed: []string{"sec1.test/2000"}})
	for _, name := range []string{"sec1@test/2000", "sec1/test/2000", "sec1.test:2000", "sec1_test_2000"} {
		if err := r.Apply(report(name, 10)); err == nil {
			t.Errorf("look-alike %q added", name)
		}
	}
	if err := r.Apply(report("sec1.test/2000", 10)); err != nil {
		t.Fatal(err)
	}
	if got, ok := r.Place(Visitor{}); !ok || got != "sec1.test/2000" {
		t.Errorf("Place = %q %v", got, ok)
	}
}
