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
	c := startCluster(t, 2, map[string]any{"simulationServers": []string{"127.0.0.1:2961"}})
	survivor, victim := c.members[0], c.members[1]
	if q := survivor.scrape(t).value("simgate_cluster_quorum"); q != 1 {
		t.Fatalf("simgate_cluster_quorum %v with both members up", q)
	}
	victim.coord.stop(t, syscall.SIGKILL, 10*time.Second)
	testutil.WaitFor(t, 15*time.Second, 50*time.Millisecond, func() error {
		out := survivor.coord.out.String()
		for _, want := range []string{"level=ERROR", "cluster quorum lost", "mail, drains and the servers bucket", "members_seen=1", "needed=2"} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("the survivor has not said %q", want)
			}
		}
		return nil
	})
	_, body, err := get(survivor.base + "/api/servers")
	if err != nil || !strings.Contains(body, `"quorum":false`) || !strings.Contains(body, "reaches 1 of the cluster's 2 members, 2 needed") {
		t.Errorf("/api/servers during the loss: %v %s", err, body)
	}
	if q := survivor.scrape(t).value("simgate_cluster_quorum"); q != 0 {
		t.Errorf("simgate_cluster_quorum %v during the loss", q)
	}
	if err := victim.tryLaunch(t); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(survivor.coord.out.String(), "cluster quorum back") {
			return errString("the survivor has not said the quorum is back")
		}
		return nil
	})
}
