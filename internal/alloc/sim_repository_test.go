package alloc

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// PROTOCOL §1.1 in the placement simulator: a farm of dedicated and sharing
// servers, a stream of worlds from several repositories. Each simulation
// server checks, with its true current load, whether it takes the world;
// a visitor it refuses reads its error and gets no session.

// webotsCloudPolicy is webots.cloud's broker as the issue describes it:
// dedicated servers by prefix first (lowest load), then servers that share
// their idle time by shareIdleTime − load, on loads refreshed every 60 s.
type webotsCloudPolicy struct {
	servers []simServer
	fresh   []float64 // the latest reports
	stale   []float64 // what the broker knows: a copy taken every 60 s
	synced  time.Duration
	started bool
}

func (p *webotsCloudPolicy) report(now time.Duration, i int, rep Report) {
	p.fresh[i] = rep.Load
	if !p.started || now-p.synced >= 60*time.Second {
		copy(p.stale, p.fresh)
		p.synced, p.started = now, true
	}
}

func (p *webotsCloudPolicy) place(_ time.Duration, v Visitor) (int, bool) {
	best := -1
	for i, s := range p.servers {
		if s.sharing != nil && dedicated(s.sharing, v.URL) && p.stale[i] < simThreshold && (best < 0 || p.stale[i] < p.stale[best]) {
			best = i
		}
	}
	if best >= 0 {
		return best, true
	}
	room := 0.0
	for i, s := range p.servers {
		if sh := s.sharing; sh != nil && shares(sh, v.URL) {
			if r := sh.ShareIdle - p.stale[i]; r > room {
				best, room = i, r
			}
		}
	}
	return best, best >= 0
}

func repositoryScenario(every_ time.Duration) simScenario {
	cyber := &Sharing{Allowed: []string{"https://github.com/cyberbotics/"}}
	public := &Sharing{Docker: true, ShareIdle: 50}
	picky := &Sharing{Docker: true, ShareIdle: 30, Blocked: []string{"https://github.com/evil/"}}
	srv := func(name string, per float64, sh *Sharing) simServer {
		return simServer{name: name, base: 5, perSession: per, sharing: sh}
	}
	sc := simScenario{name: "repositories", servers: []simServer{
		srv("ded1/2000", 4, cyber), srv("ded2/2000", 4, cyber),
		srv("pub1/2000", 3, public), srv("pub2/2000", 3, public), srv("pub3/2000", 4, public), srv("pub4/2000", 4, public),
		srv("picky1/2000", 3, picky), srv("picky2/2000", 3, picky),
	}, duration: between(60*time.Second, 120*time.Second), end: 300 * time.Second}
	sc.arrivals = every(0, 240*time.Second, every_)
	rng := rand.New(rand.NewPCG(7, 77))
	for i := range sc.arrivals {
		url := fmt.Sprintf("https://github.com/someone%d/robots/blob/main/worlds/w.wbt", rng.IntN(20))
		switch r := rng.Float64(); {
		case r < 0.5:
			url = "https://github.com/cyberbotics/webots/blob/R2025a/projects/worlds/e-puck.wbt"
		case r < 0.6:
			url = "https://github.com/evil/thing/blob/main/worlds/x.wbt"
		}
		sc.visitors = append(sc.visitors, simVisitor{Visitor: Visitor{Addr: fmt.Sprintf("v%d", i), URL: url}, comes: true})
	}
	return sc
}

// TestRepositoryPlacementInTheSimulator: simgate sends no visitor to a
// simulation server that refuses them while another would take them; the
// original (which ignores the world) and webots.cloud's rule (stale loads)
// do. Run with -v for the table the README quotes.
func TestRepositoryPlacementInTheSimulator(t *testing.T) {
	for _, step := range []time.Duration{time.Second, 400 * time.Millisecond} {
		sc := repositoryScenario(step)
		t.Run(fmt.Sprintf("a visitor every %v", step), func(t *testing.T) {
			results := []struct {
				name string
				res  simResult
			}{
				{"simgate", simulate(sc, func(c *time.Time) policy { return newSimgatePolicy(sc, c) })},
				{"original (ignores the URL)", simulate(sc, func(*time.Time) policy { return &originalPolicy{load: make([]float64, len(sc.servers))} })},
				{"webots.cloud (loads 60 s old)", simulate(sc, func(*time.Time) policy {
					return &webotsCloudPolicy{servers: sc.servers, fresh: make([]float64, len(sc.servers)), stale: make([]float64, len(sc.servers))}
				})},
			}
			t.Logf("%d visitors (one every %v), 8 servers: 2 dedicated to cyberbotics/, 4 sharing up to 50%%, 2 up to 30%% blocking evil/", len(sc.arrivals), step)
			t.Logf("%-30s %8s %18s %11s %9s %9s", "policy", "sessions", "sent to a refusal", "avoidable", "no server", "over 95%")
			for _, r := range results {
				t.Logf("%-30s %8d %18d %11d %9d %9d", r.name, r.res.placed, r.res.sentToRefuser, r.res.avoidable, r.res.refused, r.res.over)
			}
			if ours := results[0].res; ours.avoidable != 0 {
				t.Errorf("simgate sent %d visitors to a server that refused them while another would have taken them", ours.avoidable)
			}
			if results[1].res.avoidable == 0 || results[2].res.avoidable == 0 {
				t.Error("the scenario does not trouble the other policies: it proves nothing")
			}
		})
	}
}
