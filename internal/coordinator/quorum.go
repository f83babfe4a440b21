package coordinator

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Losing quorum is loud (issue 21): a member that reaches fewer than a
// majority of its cluster's members can no longer read or write the
// cluster's state, so mail, drains and the servers bucket stop. It says so
// in one ERROR line (what stopped, members seen and needed), on
// /api/servers (summary.coordinator.quorum, summary.alerts), on the monitor
// page and in simgate_cluster_quorum; and in an INFO line when it is back.

// quorum is what the watch last found.
type quorum struct {
	configured int // the cluster's members (clusterSize)
	lost       atomic.Bool
	seen       atomic.Int64
	formedAt   atomic.Int64 // Unix ns when a majority first met; 0 before
}

// needed is a majority of the configured members (1 alone).
func (q *quorum) needed() int { return q.configured/2 + 1 }

// watchQuorum follows the members this one reaches until ctx ends.
func (c *Coordinator) watchQuorum(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	c.metrics.ClusterQuorum.Set(1)
	formed := false // a majority was reached once: the cluster has formed
	for {
		seen := c.nats.Members()
		c.quorum.seen.Store(int64(seen))
		have := seen >= c.quorum.needed()
		if have && !formed {
			c.quorum.formedAt.Store(time.Now().UnixNano())
		}
		formed = formed || have
		switch lost := c.quorum.lost.Load(); {
		case !have && !lost && (formed || time.Since(c.ready.started) > startGraceQuorum):
			c.quorum.lost.Store(true)
			c.metrics.ClusterQuorum.Set(0)
			c.log.Error("cluster quorum lost: mail, drains and the servers bucket have stopped", "members_seen", seen,
				"needed", c.quorum.needed(), "configured", c.quorum.configured,
				"why", "the cluster's state needs a majority of its members; visitors are still placed with the farm this member sees")
		case have && lost:
			c.quorum.lost.Store(false)
			c.metrics.ClusterQuorum.Set(1)
			c.log.Info("cluster quorum back: mail, drains and the servers bucket resume", "members_seen", seen, "needed", c.quorum.needed())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startGraceQuorum: members start one after another, and a member alone
// for its first moments has not lost anything; once a majority met, or
// after this, a member without one says so.
const startGraceQuorum = 30 * time.Second

// quorumAlert is the alert while quorum is lost, "" otherwise.
func (c *Coordinator) quorumAlert() string {
	if !c.quorum.lost.Load() {
		return ""
	}
	return fmt.Sprintf("this coordinator reaches %d of the cluster's %d members, %d needed: mail, drains and the servers bucket have stopped",
		c.quorum.seen.Load(), c.quorum.configured, c.quorum.needed())
}
