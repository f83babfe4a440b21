package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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
	// The balancer: a member takes visitors while its /readyz is 200. A
	// restarted member comes back on another HTTP port: the balancer is
	// told it (bases), and reads nothing else of the farm a restart writes.
	var mu sync.Mutex
	bases := make([]string, len(c.members))
	for i, f := range c.members {
		bases[i] = f.base
	}
	baseOf := func(i int) string { mu.Lock(); defer mu.Unlock(); return bases[i] }
	var asked, refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				base := baseOf(i)
				resp, _, err := get(base + "/readyz")
				if ok := err == nil && resp.StatusCode == 200; !ok {
					time.Sleep(20 * time.Millisecond) // the balancer's check period, not a wait for an event
					continue
				}
				_, body, err := getAs(base+"/session", fmt.Sprintf("10.9.%d.%d", i, n%250+1))
				asked.Add(1)
				if err == nil && !strings.HasPrefix(body, "ws://") {
					if refused.Add(1) < 3 {
						_, doc, _ := get(base + "/api/servers")
						t.Logf("member %d refused a visitor while ready (%v): %q\n%s", i, time.Now().Format("15:04:05.000"), body, doc)
					}
				}
				// A visitor's pace: 30 new visitors a second over the three
				// members, whose bookings (3 s each, no session ever starts
				// here) stay well inside the farm's room.
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	for i, f := range c.members {
		t.Logf("stopping member %d at %v", i, time.Now().Format("15:04:05.000"))
		if code, _ := f.coord.stop(t, syscall.SIGTERM, 15*time.Second); code != 0 {
			t.Fatalf("member %d stopped with %d", i, code)
		}
		mu.Lock()
		bases[i] = "http://127.0.0.1:1" // down: nothing listens there
		mu.Unlock()
		if err := f.tryLaunch(t); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		bases[i] = f.base
		mu.Unlock()
		c.waitFormed(t, c.members)
		f.waitReady(t)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d visitors during the rolling upgrade, %d refused", asked.Load(), refused.Load())
	if refused.Load() > 0 {
		t.Errorf("%d visitors refused by a ready member while servers were up", refused.Load())
	}
	if asked.Load() == 0 {
		t.Error("no visitor asked: the test proves nothing")
	}
}
