package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// TestQuorumLossIsLoud: of two members, one dies: the survivor says in one
// ERROR line what stopped and why (members seen and needed), on
// /api/servers (summary.coordinator.quorum false, summary.alerts) and in
// simgate_cluster_quorum; and in an INFO line once the member is back.
func TestQuorumLossIsLoud(t *testing.T) {
	const server = "127.0.0.1:2961"
	c, smtp := startMailCluster(t, 2, []string{server}, map[string]any{"holdOff": 0})
	survivor, victim := c.members[0], c.members[1]
	// The agent on the survivor: what is under test is the cluster's state,
	// not a failover.
	startEnv(t, "", []string{"HOST_PROC=" + quietProc(t)}, survivor.agent, "-nats", survivor.nats, "-server", server,
		"-interval", "1s", "-probe", "off", "-simulation-config", "off")
	for _, f := range c.members {
		f.waitState(t, server, 15*time.Second, "up")
	}
	load := startVisitors(t, c.members)
	before := downs(t, []*farm{survivor})
	mails := len(smtp.Messages())
	if q := survivor.scrape(t).value("simgate_cluster_quorum"); q != 1 {
		t.Fatalf("simgate_cluster_quorum %v with both members up", q)
	}
	victim.coord.stop(t, syscall.SIGKILL, 10*time.Second)
	testutil.WaitFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		out := survivor.coord.out.String()
		for _, want := range []string{"level=ERROR", "cluster quorum lost", "places no visitor, sends no mail", "members_seen=1", "needed=2"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("the survivor has not said %q", want)
			}
		}
		return nil
	})
	// The document is at most one refresh (250 ms) old.
	testutil.WaitFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		_, body, err := get(survivor.base + "/api/servers")
		if err != nil || !strings.Contains(body, `"quorum":false`) || !strings.Contains(body, "reaches 1 of the cluster's 2 members, 2 needed") {
			return fmt.Errorf("/api/servers during the loss: %v %s", err, body)
		}
		return nil
	})
	if q := survivor.scrape(t).value("simgate_cluster_quorum"); q != 0 {
		t.Errorf("simgate_cluster_quorum %v during the loss", q)
	}
	// Without a majority the survivor is not ready and places nobody: it
	// cannot see the drains the cluster makes (issue 30).
	if resp, body, _ := get(survivor.base + "/readyz"); resp == nil || resp.StatusCode != 503 || !strings.Contains(body, "no quorum") {
		t.Errorf("/readyz during the loss: %q", body)
	}
	if _, body, _ := get(survivor.base + "/session"); !strings.HasPrefix(body, "Error:") {
		t.Errorf("/session during the loss: %q, want the busy farm's answer", body)
	}
	if err := victim.tryLaunch(t); err != nil {
		t.Fatal(err)
	}
	load.set(1, victim.base)
	testutil.WaitFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(survivor.coord.out.String(), "cluster quorum back") {
			return errString("the survivor has not said the quorum is back")
		}
		return nil
	})
	placed, refused, errs := load.halt()
	mc := countMails(smtp.Messages()[mails:], nil)
	figures{placed: placed, refused: refused, errors: errs, falseDowns: falseDowns(t, []*farm{survivor}, before, 0), mails: &mc}.report(t)
}
