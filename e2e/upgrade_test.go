package e2e

import (
	"syscall"
	"testing"
	"time"
)

// TestRollingUpgradeRefusesNoVisitor: the README's rolling upgrade (stop a
// member, start it again, wait until every member reaches the others, then
// the next), with visitors asking all along, as Apache's balancer sends
// them: to the members whose /readyz answers 200. No visitor is refused
// while a server is up: a restarted member is ready only once it has heard
// from every server (1 s heartbeats: 18 refusals before).
func TestRollingUpgradeRefusesNoVisitor(t *testing.T) {
	rollingUpgrade(t, func(t *testing.T, i int, f *farm, load *visitors) {
		t.Logf("stopping member %d at %v", i, time.Now().Format("15:04:05.000"))
		if code, _ := f.coord.stop(t, syscall.SIGTERM, 15*time.Second); code != 0 {
			t.Fatalf("member %d stopped with %d", i, code)
		}
		load.set(i, "")
		if err := f.tryLaunch(t); err != nil {
			t.Fatal(err)
		}
		load.set(i, f.base)
	})
}

// TestRollingReloadRefusesNoVisitor is the README's rolling upgrade as it
// is written now (issue 29): each member reloaded in turn (SIGHUP, a new
// process on the same HTTP port), visitors sent through the balancer all
// along: none refused, no server down.
func TestRollingReloadRefusesNoVisitor(t *testing.T) {
	rollingUpgrade(t, func(t *testing.T, i int, f *farm, _ *visitors) {
		t.Logf("reloading member %d at %v", i, time.Now().Format("15:04:05.000"))
		reload(t, f)
	})
}

// rollingUpgrade upgrades each member of a cluster of three in turn with
// upgrade, under visitors and a site's heartbeats, and reports the figures.
func rollingUpgrade(t *testing.T, upgrade func(t *testing.T, i int, f *farm, load *visitors)) {
	servers := []string{"127.0.0.1:2991", "127.0.0.1:2992", "127.0.0.1:2993"}
	c := startCluster(t, 3, map[string]any{"simulationServers": servers, "http": map[string]any{"sessionRate": 0}})
	quiet := quietProc(t)
	for _, s := range servers {
		startEnv(t, "", []string{"HOST_PROC=" + quiet}, c.members[0].agent, "-nats", c.natsURLs(), "-server", s,
			"-interval", "1s", "-probe", "off", "-simulation-config", "off") // a site's heartbeats
	}
	for _, f := range c.members {
		for _, s := range servers {
			f.waitState(t, s, 15*time.Second, "up")
		}
	}
	// Visitors all along, through the balancer; a restarted member comes
	// back on another HTTP port, which the balancer is told.
	load := startVisitors(t, c.members)
	down := downEvents(t, c.natsURLs())
	for i, f := range c.members {
		upgrade(t, i, f, load)
		c.waitFormed(t, c.members)
		f.waitReady(t)
	}
	placed, refused, errs := load.halt()
	figures{placed: placed, refused: refused, errors: errs, falseDowns: int(down.Load())}.report(t)
}
