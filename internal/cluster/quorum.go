package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Quorum follows whether this member reaches a majority of its cluster.
// Losing it is loud (issue 21): a member that reaches fewer than a
// majority can no longer read or write the cluster's state, so mail,
// drains and the servers bucket stop. It says so in one ERROR line (what
// stopped, members seen and needed), in Alert (summary.coordinator.quorum,
// summary.alerts on /api/servers, the monitor page) and in its gauge
// (simgate_cluster_quorum); and in an INFO line when it is back.
type Quorum struct {
	configured int          // the cluster's members (Size)
	members    func() int   // the members this one reaches, itself included
	started    time.Time    // grace for members starting one after another
	log        *slog.Logger // the ERROR and INFO lines
	gauge      prometheus.Gauge
	lost       atomic.Bool
	seen       atomic.Int64
	formedAt   atomic.Int64 // Unix ns when a majority first met; 0 before
}

// NewQuorum follows members against a cluster of configured members.
func NewQuorum(configured int, members func() int, started time.Time, log *slog.Logger, gauge prometheus.Gauge) *Quorum {
	gauge.Set(1)
	return &Quorum{configured: configured, members: members, started: started, log: log, gauge: gauge}
}

// Needed is a majority of the configured members (1 alone).
func (q *Quorum) Needed() int { return q.configured/2 + 1 }

// Have reports whether seen members make a majority.
func (q *Quorum) Have(seen int) bool { return seen >= q.Needed() }

// FormedAt is when a majority first met (the cluster formed), zero before.
func (q *Quorum) FormedAt() time.Time {
	if ns := q.formedAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// startGrace: members start one after another, and a member alone for its
// first moments has not lost anything; once a majority met, or after
// this, a member without one says so.
const startGrace = 30 * time.Second

// Run follows the members this one reaches until ctx ends.
func (q *Quorum) Run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	formed := false // a majority was reached once: the cluster has formed
	for {
		seen := q.members()
		q.seen.Store(int64(seen))
		have := q.Have(seen)
		if have && !formed {
			q.formedAt.Store(time.Now().UnixNano())
		}
		formed = formed || have
		switch lost := q.lost.Load(); {
		case !have && !lost && (formed || time.Since(q.started) > startGrace):
			q.lost.Store(true)
			q.gauge.Set(0)
			q.log.Error("cluster quorum lost: mail, drains and the servers bucket have stopped", "members_seen", seen,
				"needed", q.Needed(), "configured", q.configured,
				"why", "the cluster's state needs a majority of its members; visitors are still placed with the farm this member sees")
		case have && lost:
			q.lost.Store(false)
			q.gauge.Set(1)
			q.log.Info("cluster quorum back: mail, drains and the servers bucket resume", "members_seen", seen, "needed", q.Needed())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Alert is the alert while quorum is lost, "" otherwise.
func (q *Quorum) Alert() string {
	if q == nil || !q.lost.Load() {
		return ""
	}
	return fmt.Sprintf("this coordinator reaches %d of the cluster's %d members, %d needed: mail, drains and the servers bucket have stopped",
		q.seen.Load(), q.configured, q.Needed())
}
