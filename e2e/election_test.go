package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// TestFailureDuringElectionIsMailed: notifications are level-triggered.
// The leader is killed (kill -9) and, within a second, a simulation server
// really dies (its agent killed) while no member leads: the new leader,
// once elected, mails "not responding" exactly once; when the server comes
// back, "working again" exactly once, after it; no other server is mailed.
func TestFailureDuringElectionIsMailed(t *testing.T) {
	servers := []string{"127.0.0.1:2981", "127.0.0.1:2982", "127.0.0.1:2983"}
	const victim = "127.0.0.1:2982"
	c, smtp := startMailCluster(t, 3, servers, nil)
	quiet := quietProc(t)
	agent := func(s string) *proc {
		return startEnv(t, "", []string{"HOST_PROC=" + quiet}, c.members[0].agent, "-nats", c.natsURLs(), "-server", s,
			"-interval", "200ms", "-probe", "off", "-simulation-config", "off")
	}
	agents := map[string]*proc{}
	for _, s := range servers {
		agents[s] = agent(s)
	}
	for _, f := range c.members {
		for _, s := range servers {
			f.waitState(t, s, 15*time.Second, "up")
		}
	}
	leader := c.waitFormed(t, c.members)
	var keep []*farm
	for _, f := range c.members {
		if f != leader {
			keep = append(keep, f)
		}
	}
	// Visitors all along; the balancer's checks take the killed member out.
	load := startVisitors(t, c.members)
	before := downs(t, keep)
	if code, _ := leader.coord.stop(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("kill -9 gave exit 0")
	}
	agents[victim].stop(t, syscall.SIGKILL, 10*time.Second) // within a second: no member leads yet
	elected := time.Now()
	c.waitFormed(t, keep)
	election := time.Since(elected)
	t.Logf("a new leader in %v", election.Round(time.Millisecond))
	count := func(subject, server string) int {
		n := 0
		for _, m := range smtp.Messages() {
			if strings.Contains(m.Data, "Subject: "+subject+"\r\n") && strings.Contains(m.Data, server+" simulation server") {
				n++
			}
		}
		return n
	}
	testutil.WaitFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if count("Simulation server not responding", victim) == 0 {
			return errString("no \"not responding\" for the server that died during the election")
		}
		return nil
	})
	agents[victim] = agent(victim)
	testutil.WaitFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if count("Simulation server working again", victim) == 0 {
			return errString("no \"working again\" once it is back")
		}
		return nil
	})
	// A little longer for a duplicate to show, if one were coming: two
	// mail retries' worth.
	deadline := time.Now().Add(2 * time.Second)
	testutil.WaitFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		if time.Now().Before(deadline) {
			return errString("watching")
		}
		return nil
	})
	placed, refused, errs := load.halt()
	mails := countMails(smtp.Messages(), []mailWant{
		{"Simulation server not responding", victim}, {"Simulation server working again", victim}})
	// Each survivor saw the victim go down once: any other down is false.
	figures{placed: placed, refused: refused, errors: errs, falseDowns: falseDowns(t, keep, before, 1),
		mails: &mails, election: election}.report(t)
}
