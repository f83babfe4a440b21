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
	// current: a majority is reached now (a loss confirmed on two checks
	// in a row: a member back from a stall reads the beats that waited
	// first). What Lead, readiness and placement ask.
	current atomic.Bool
	since   atomic.Pointer[time.Time] // when current last became true (monotonic)
	// onLost and onBack, when set, are called on a confirmed loss of a
	// formed cluster's majority and on its return (from Run's goroutine).
	onLost, onBack func()
	// Run's alone: a majority was reached once (the cluster formed); it
	// was lost once since (onBack is due); checks in a row without one.
	formed, lostOnce bool
	short            int
}

// OnChange sets what is called when the majority is lost (after the
// cluster formed) and when it is back; before Run.
func (q *Quorum) OnChange(lost, back func()) { q.onLost, q.onBack = lost, back }

// HeldFor is how long this member has reached a majority without a break
// (0 without one now); forever alone.
func (q *Quorum) HeldFor() time.Duration {
	if q == nil || q.configured <= 1 {
		return time.Duration(1<<63 - 1)
	}
	at := q.since.Load()
	if !q.current.Load() || at == nil {
		return 0
	}
	return time.Since(*at)
}

// Current reports whether this member reaches a majority now; always for
// a lone coordinator.
func (q *Quorum) Current() bool { return q == nil || q.configured <= 1 || q.current.Load() }

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

// checkEvery is how often Run counts the members reached.
const checkEvery = 250 * time.Millisecond

// Run follows the members this one reaches until ctx ends.
func (q *Quorum) Run(ctx context.Context) {
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		q.check(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check counts the members reached at now: a majority makes the quorum
// current at once; its absence, on two checks in a row (a member back
// from a stall reads the beats that waited first).
func (q *Quorum) check(now time.Time) {
	seen := q.members()
	q.seen.Store(int64(seen))
	have := q.Have(seen)
	if have && !q.formed {
		q.formedAt.Store(now.UnixNano())
	}
	q.formed = q.formed || have
	if have {
		q.short = 0
		if !q.current.Swap(true) {
			q.since.Store(&now)
			if q.lostOnce && q.onBack != nil {
				q.onBack()
			}
		}
	} else if q.short++; q.short >= 2 && q.current.Swap(false) {
		q.lostOnce = true
		if q.onLost != nil {
			q.onLost()
		}
	}
	switch lost := q.lost.Load(); {
	case !have && q.short >= 2 && !lost && (q.formed || now.Sub(q.started) > startGrace):
		q.lost.Store(true)
		q.gauge.Set(0)
		q.log.Error("cluster quorum lost: this member places no visitor, sends no mail and is not ready (/readyz) until it reaches a majority again",
			"members_seen", seen, "needed", q.Needed(), "configured", q.configured,
			"why", "the cluster's state (drains, mail, the line) needs a majority of its members; the members that have one serve")
	case have && lost:
		q.lost.Store(false)
		q.gauge.Set(1)
		q.log.Info("cluster quorum back: placing again once the cluster's drains are read", "members_seen", seen, "needed", q.Needed())
	}
}

// Alerts is the alert while quorum is lost, none otherwise.
func (q *Quorum) Alerts() []string {
	if q == nil || !q.lost.Load() {
		return nil
	}
	return []string{fmt.Sprintf("this coordinator reaches %d of the cluster's %d members, %d needed: it places no visitor and sends no mail",
		q.seen.Load(), q.configured, q.Needed())}
}
