package e2e

import (
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/testutil"
)

// TestHungMemberCostsNoServer: a follower that holds every agent's
// connection hangs (SIGSTOP) for 20 s. The agents notice within about a
// second (pings half an interval apart) and fail over to the others, well
// inside their 3 s silence timeout: no server goes down on the survivors,
// and no mail goes out. Heartbeats of 1 s, as a site runs them.
func TestHungMemberCostsNoServer(t *testing.T) { hungMember(t, false) }

// TestHungLeaderCostsNoServer: the same with the leader hung (issue 30):
// the two others elect a leader among themselves, and the former leader,
// resumed, neither judges nor mails a server it stopped hearing while it
// was frozen: it finds itself without the lead and its agents elsewhere.
func TestHungLeaderCostsNoServer(t *testing.T) { hungMember(t, true) }

// hungMember freezes the leader (leader) or a follower for 20 s, every
// agent connected to it, under a load of visitors.
func hungMember(t *testing.T, leader bool) {
	if testing.Short() {
		t.Skip("a 20 s fault")
	}
	servers := []string{"127.0.0.1:2971", "127.0.0.1:2972", "127.0.0.1:2973"}
	c, smtp := startMailCluster(t, 3, servers, map[string]any{"holdOff": 0})
	quiet := quietProc(t)
	hung := c.waitFormed(t, c.members)
	if lead := hung; !leader {
		hung = c.members[0]
		if hung == lead {
			hung = c.members[1]
		}
	}
	var survivors []*farm
	for _, f := range c.members {
		if f != hung {
			survivors = append(survivors, f)
		}
	}
	var agents []*proc
	for _, s := range servers {
		// Only the member that will hang: the agents learn the others from it.
		agents = append(agents, startEnv(t, "", []string{"HOST_PROC=" + quiet}, hung.agent, "-nats", hung.nats, "-server", s,
			"-interval", "1s", "-probe", "off", "-simulation-config", "off"))
	}
	for _, f := range c.members {
		for _, s := range servers {
			f.waitState(t, s, 15*time.Second, "up")
		}
	}
	// Every heartbeat as a survivor sees it: the longest gap per server is
	// the failover's cost, to hold against the 3 s silence timeout.
	var mu sync.Mutex
	last, gap := map[string]time.Time{}, map[string]time.Duration{}
	nc, err := nats.Connect(survivors[0].nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Subscribe("simgate.load.>", func(m *nats.Msg) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if l, ok := last[m.Subject]; ok && now.Sub(l) > gap[m.Subject] {
			gap[m.Subject] = now.Sub(l)
		}
		last[m.Subject] = now
	}); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	load := startVisitors(t, c.members)
	before := downs(t, survivors)
	beforeHung := downs(t, []*farm{hung})
	mails := len(smtp.Messages())
	if err := hung.coord.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	defer func() { _ = hung.coord.cmd.Process.Signal(syscall.SIGCONT) }()
	var election time.Duration
	if leader {
		c.waitFormed(t, survivors)
		election = time.Since(frozen)
	}
	// 20 s of the fault, watching the survivors all along.
	end := time.Now().Add(20 * time.Second)
	testutil.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if n := falseDowns(t, survivors, before, 0); n > 0 {
			t.Fatalf("the survivors marked %d servers down while a member hung", n)
		}
		if time.Now().Before(end) {
			return errString("the fault goes on")
		}
		return nil
	})
	if err := hung.coord.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for _, f := range survivors {
		for _, s := range servers {
			if st := f.servers(t)[s].State; st != "up" {
				t.Errorf("%s is %s on a survivor", s, st)
			}
		}
	}
	// The resumed member: its agents are on the others now. Over two
	// silence timeouts it judges none of their servers down (issue 30: it
	// dropped their heartbeats, kept by a stale map of closed connections).
	hung.waitReady(t)
	watch := time.NewTicker(100 * time.Millisecond)
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); <-watch.C {
		if n := falseDowns(t, []*farm{hung}, beforeHung, 0); n > 0 {
			t.Errorf("the resumed member marked %d servers down", n)
			break
		}
	}
	watch.Stop()
	mu.Lock()
	worst := time.Duration(0)
	for _, g := range gap {
		worst = max(worst, g)
	}
	mu.Unlock()
	t.Logf("longest heartbeat gap on a survivor while a member hung: %v (silence timeout 3 s)", worst.Round(time.Millisecond))
	for _, a := range agents {
		if !strings.Contains(a.out.String(), "reconnected to NATS") {
			t.Errorf("an agent did not fail over:\n%s", a.out.String())
		}
	}
	if worst >= 2500*time.Millisecond {
		t.Errorf("a heartbeat gap of %v: the failover is not well inside the 3 s silence timeout", worst)
	}
	placed, refused, errs := load.halt()
	mc := countMails(smtp.Messages()[mails:], nil)
	figures{placed: placed, refused: refused, errors: errs, mails: &mc,
		falseDowns: falseDowns(t, survivors, before, 0) + falseDowns(t, []*farm{hung}, beforeHung, 0), election: election}.report(t)
}
