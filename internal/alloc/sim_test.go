package alloc

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// The placement simulator: session arrivals over heterogeneous servers, on a
// simulated clock, each session adding load after a delay and lasting a
// while; agents report the load averaged over their last five one-second
// samples, as the real agent does. The same arrivals go through simgate's
// registry and through the original's policy (the lowest reported load, no
// reservation), and the test compares how many servers each pushed over the
// threshold.

type simServer struct {
	name       string
	base       float64  // load with no session
	perSession float64  // load one running session adds
	sharing    *Sharing // its simulation.json; nil: it runs every world
}

// accepts is the simulation server's own check when a visitor arrives
// (webots-server): a world under allowedRepositories at any load; any
// other only with docker, shareIdleTime > 0, not blocked, and its current
// load at or below shareIdleTime.
func (s simServer) accepts(url string, load float64) bool {
	sh := s.sharing
	if sh == nil || !IsRepositoryURL(url) || dedicated(sh, url) {
		return true
	}
	return shares(sh, url) && load <= sh.ShareIdle
}

type simScenario struct {
	name     string
	servers  []simServer
	arrivals []time.Duration // since the start, in order
	duration func(r *rand.Rand) time.Duration
	end      time.Duration
	// maxSessions reported by every agent; 0: the true capacity, 100 / perSession.
	maxSessions int
	// overload: demand beyond the farm's capacity. Every server then ends
	// at the threshold under either policy, and one session's load pushes
	// each a little over it; the test asks that simgate's overshoot stays
	// under one session and below the original's.
	overload bool
	// visitors, when set, says who asks at each arrival (same index); nil:
	// each arrival is a new anonymous visitor who opens the session.
	visitors []simVisitor
}

// simVisitor is who asks for a session, and whether they then open it (a
// script or a reloaded page does not).
type simVisitor struct {
	Visitor
	comes bool
}

type simResult struct {
	over      int     // servers whose true load went above the threshold
	worst     float64 // the largest true load minus the threshold, 0 if none
	placed    int
	refused   int
	peakLoad  []float64
	started   []int          // sessions started on each server
	refusedBy map[string]int // refusals by visitor address
	// Visitors sent to a simulation server that refused them, and of
	// those, the ones another server would have taken.
	sentToRefuser, avoidable int
}

const (
	simStep      = 100 * time.Millisecond
	simInterval  = time.Second
	simStartLag  = 500 * time.Millisecond // the simulation process appears
	simRampTime  = 2500 * time.Millisecond
	simThreshold = 95.0
)

type simSession struct {
	server     int
	start, end time.Duration
}

// policy is what the simulator asks where a session goes.
type policy interface {
	report(now time.Duration, i int, rep Report)
	place(now time.Duration, v Visitor) (int, bool)
}

// simgatePolicy is the real registry on the simulated clock.
type simgatePolicy struct {
	reg   *Registry
	index map[string]int
	now   *time.Time
}

func newSimgatePolicy(sc simScenario, clock *time.Time) *simgatePolicy {
	names := make([]string, len(sc.servers))
	index := map[string]int{}
	for i, s := range sc.servers {
		names[i] = s.name
		index[s.name] = i
	}
	reg := New(Options{Servers: names, Threshold: simThreshold, Seed: 7, Now: func() time.Time { return *clock }})
	return &simgatePolicy{reg: reg, index: index, now: clock}
}

func (p *simgatePolicy) report(_ time.Duration, _ int, rep Report) { _ = p.reg.Apply(rep) }
func (p *simgatePolicy) place(_ time.Duration, v Visitor) (int, bool) {
	name, ok := p.reg.Place(v)
	return p.index[name], ok
}

// originalPolicy is session_server.py's choice: the lowest load last
// reported, below the threshold; the first one on a tie.
type originalPolicy struct{ load []float64 }

func (p *originalPolicy) report(_ time.Duration, i int, rep Report) { p.load[i] = rep.Load }
func (p *originalPolicy) place(time.Duration, Visitor) (int, bool) {
	best := -1
	for i, l := range p.load {
		if l < simThreshold && (best < 0 || l < p.load[best]) {
			best = i
		}
	}
	return best, best >= 0
}

func simulate(sc simScenario, mk func(clock *time.Time) policy) simResult {
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := epoch
	pol := mk(&clock)
	rng := rand.New(rand.NewPCG(42, 4242)) // the same durations for every policy
	n := len(sc.servers)
	var sessions []simSession
	samples := make([][]float64, n) // the agent's last five samples
	res := simResult{peakLoad: make([]float64, n), started: make([]int, n), refusedBy: map[string]int{}}
	trueLoad := func(i int, now time.Duration) (load float64, running int) {
		load = sc.servers[i].base
		for _, s := range sessions {
			if s.server != i || now < s.start+simStartLag || now >= s.end {
				continue
			}
			running++
			ramp := float64(now-s.start-simStartLag) / float64(simRampTime)
			load += sc.servers[i].perSession * min(ramp, 1)
		}
		return load, running
	}
	next := 0
	for now := time.Duration(0); now <= sc.end; now += simStep {
		clock = epoch.Add(now)
		// Heartbeats: each server on its own phase within the second.
		for i := range n {
			phase := time.Duration(i*int(simInterval/simStep)/n) * simStep
			if (now-phase)%simInterval != 0 || now < phase {
				continue
			}
			l, running := trueLoad(i, now)
			samples[i] = append(samples[i], min(l, 100))
			if len(samples[i]) > 5 {
				samples[i] = samples[i][1:]
			}
			var sum float64
			for _, v := range samples[i] {
				sum += v
			}
			instant := min(l, 100) // the agent's latest single sample
			pol.report(now, i, Report{Server: sc.servers[i].name, Status: StatusUp, Load: sum / float64(len(samples[i])),
				Sessions: running, MaxSessions: maxSessions(sc, i), Interval: simInterval, At: clock,
				Sharing: sc.servers[i].sharing, InstantLoad: &instant})
		}
		for next < len(sc.arrivals) && sc.arrivals[next] <= now {
			v := simVisitor{comes: true}
			if sc.visitors != nil {
				v = sc.visitors[next]
			}
			next++
			d := sc.duration(rng)
			i, ok := pol.place(now, v.Visitor)
			if ok {
				if l, _ := trueLoad(i, now); !sc.servers[i].accepts(v.URL, l) {
					res.sentToRefuser++
					for j := range n {
						if lj, _ := trueLoad(j, now); lj < simThreshold && sc.servers[j].accepts(v.URL, lj) {
							res.avoidable++
							break
						}
					}
					continue // the visitor reads the simulation server's error: no session
				}
			}
			switch {
			case !ok:
				res.refused++
				res.refusedBy[v.Addr]++
			case v.comes:
				sessions = append(sessions, simSession{server: i, start: now, end: now + d})
				res.started[i]++
				res.placed++
			default:
				res.placed++
			}
		}
		for i := range n {
			l, _ := trueLoad(i, now)
			res.peakLoad[i] = max(res.peakLoad[i], l)
		}
	}
	for _, p := range res.peakLoad {
		if p > simThreshold {
			res.over++
			res.worst = max(res.worst, p-simThreshold)
		}
	}
	return res
}

func maxSessions(sc simScenario, i int) int {
	if sc.maxSessions > 0 {
		return sc.maxSessions
	}
	return int(100 / sc.servers[i].perSession)
}

func servers(perSession ...float64) []simServer {
	out := make([]simServer, len(perSession))
	for i, p := range perSession {
		out[i] = simServer{name: fmt.Sprintf("sim%d/2000", i), base: 3 + float64(i%4), perSession: p}
	}
	return out
}

func every(from, to, step time.Duration) []time.Duration {
	var out []time.Duration
	for t := from; t < to; t += step {
		out = append(out, t)
	}
	return out
}

func bursts(count int, within, period, until time.Duration) []time.Duration {
	var out []time.Duration
	for b := time.Duration(0); b < until; b += period {
		for k := range count {
			out = append(out, b+time.Duration(k)*within/time.Duration(count))
		}
	}
	return out
}

func between(lo, hi time.Duration) func(r *rand.Rand) time.Duration {
	return func(r *rand.Rand) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo))) }
}

func simScenarios() []simScenario {
	return []simScenario{
		{name: "steady, heterogeneous", servers: servers(2, 3, 4, 5, 2, 3, 4, 5, 6, 8),
			arrivals: every(0, 240*time.Second, 500*time.Millisecond), duration: between(60*time.Second, 120*time.Second), end: 300 * time.Second},
		{name: "bursts of 40 in 1 s every 20 s", servers: servers(2, 3, 4, 5, 2, 3, 4, 5, 6, 8),
			arrivals: bursts(40, time.Second, 20*time.Second, 200*time.Second), duration: between(60*time.Second, 150*time.Second), end: 260 * time.Second},
		{name: "flash crowd: 200 in 5 s", servers: servers(2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 8, 8),
			arrivals: bursts(200, 5*time.Second, time.Hour, time.Second), duration: between(120*time.Second, 240*time.Second), end: 260 * time.Second},
		{name: "agents' default maxSessions 100", servers: servers(2, 3, 4, 5, 2, 3, 4, 5, 6, 8), maxSessions: 100,
			arrivals: bursts(30, time.Second, 30*time.Second, 240*time.Second), duration: between(60*time.Second, 150*time.Second), end: 300 * time.Second},
		{name: "overload: twice the capacity", servers: servers(2, 3, 4, 5, 2, 3, 4, 5, 6, 8), overload: true,
			arrivals: every(0, 240*time.Second, 150*time.Millisecond), duration: between(60*time.Second, 120*time.Second), end: 300 * time.Second},
		{name: "few big, many small", servers: servers(1, 1, 10, 10, 10, 10, 12, 12, 12, 12),
			arrivals: bursts(15, 500*time.Millisecond, 10*time.Second, 200*time.Second), duration: between(30*time.Second, 90*time.Second), end: 260 * time.Second},
	}
}

// TestPlacementBeatsTheOriginal runs every scenario through both policies.
// Run with -v to see the figures (the README quotes them).
func TestPlacementBeatsTheOriginal(t *testing.T) {
	for _, sc := range simScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			ours := simulate(sc, func(c *time.Time) policy { return newSimgatePolicy(sc, c) })
			orig := simulate(sc, func(*time.Time) policy { return &originalPolicy{load: make([]float64, len(sc.servers))} })
			t.Logf("%-32s simgate: %2d/%d servers over %.0f%%, worst +%5.1f, %4d placed, %3d refused | original: %2d over, worst +%5.1f, %4d placed, %3d refused",
				sc.name, ours.over, len(sc.servers), simThreshold, ours.worst, ours.placed, ours.refused,
				orig.over, orig.worst, orig.placed, orig.refused)
			if sc.overload {
				var biggest float64
				for _, s := range sc.servers {
					biggest = max(biggest, s.perSession)
				}
				if ours.worst > biggest {
					t.Errorf("under overload simgate overshot by %.1f, more than one session (%.1f)", ours.worst, biggest)
				}
			} else if ours.over >= orig.over {
				t.Errorf("simgate pushed %d servers over the threshold, the original %d: want fewer", ours.over, orig.over)
			}
			if ours.worst >= orig.worst {
				t.Errorf("simgate's worst overshoot %.1f is above the original's %.1f", ours.worst, orig.worst)
			}
			if math.IsNaN(ours.worst) || ours.placed == 0 {
				t.Errorf("nothing placed: %+v", ours)
			}
		})
	}
}

// The simulator is deterministic: the same scenario gives the same figures.
func TestSimulatorIsDeterministic(t *testing.T) {
	sc := simScenarios()[1]
	run := func() simResult {
		return simulate(sc, func(c *time.Time) policy { return newSimgatePolicy(sc, c) })
	}
	a, b := run(), run()
	if a.over != b.over || a.worst != b.worst || a.placed != b.placed {
		t.Errorf("two runs differ: %+v, %+v", a, b)
	}
}
