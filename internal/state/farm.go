package state

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/logging"
	"github.com/simgate/simgate/internal/schema"
)

// durableSweep is how often the leader deletes durable consumers others
// made on the farm bucket (SweepDurables).
const durableSweep = 10 * time.Second

// Keep keeps the farm bucket up to date while fence holds (the leader
// writes it): a server's key is written when its state, reason, drain or
// session count changes, when its load moved by 5 points, and at least
// every 30 s; servers no longer in entries are removed, and durable
// consumers others made are swept. It returns when ctx ends.
func (f *ServersKV) Keep(ctx context.Context, fence interface{ Holds() bool }, entries func() []schema.FarmEntry, log *slog.Logger) {
	type written struct {
		e  schema.FarmEntry
		at time.Time
	}
	errs := logging.NewThrottle(time.Minute, 4)
	last := map[string]written{}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var swept time.Time
	// A consumer made on the farm bucket is looked at within a tick, not
	// at the next sweep: 1,000 made in a few seconds (the server's limit
	// per stream) kept every new watch out until then (issue 31).
	var made atomic.Bool
	if sub, err := f.js.Conn().Subscribe(consumerCreated, func(*nats.Msg) { made.Store(true) }); err == nil {
		defer func() { _ = sub.Unsubscribe() }()
	} else {
		log.Warn("consumers made on the farm bucket are swept every 10 s only", "error", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if !fence.Holds() {
				clear(last) // a new leader writes everything again
				continue
			}
			all := entries()
			if now.Sub(swept) >= durableSweep {
				swept = now
				made.Store(false)
				f.sweep(all, now, errs, log)
			} else if made.Swap(false) {
				f.sweepConsumers(now, errs, log)
			}
			for _, e := range all {
				w, ok := last[e.Server]
				if ok && w.e.State == e.State && w.e.Reason == e.Reason && w.e.DrainedBy == e.DrainedBy &&
					w.e.Sessions == e.Sessions && w.e.Source == e.Source && math.Abs(w.e.Load-e.Load) < 5 && now.Sub(w.at) < 30*time.Second {
					continue
				}
				data, _ := json.Marshal(e)
				if !fence.Holds() {
					break // fenced: another member leads now, and writes
				}
				if err := f.Put(e.Server, data); err != nil {
					if held, ok := errs.Allow("put", now); ok {
						log.Warn("farm bucket not written; will retry", "bucket", schema.ServersBucket, "error", err, "since_last_line", held)
					}
					break
				}
				last[e.Server] = written{e, now}
			}
		}
	}
}

// sweep removes the keys of servers not in entries and the durable
// consumers others made.
func (f *ServersKV) sweep(entries []schema.FarmEntry, now time.Time, errs *logging.Throttle, log *slog.Logger) {
	keep := map[string]bool{}
	for _, e := range entries {
		keep[schema.Node(e.Server)] = true
	}
	if n, err := f.Prune(keep); n > 0 {
		log.Info("servers no longer configured removed from the farm bucket", "bucket", schema.ServersBucket, "removed", n)
	} else if err != nil {
		if held, ok := errs.Allow("prune", now); ok {
			log.Warn("farm bucket not pruned; will retry", "bucket", schema.ServersBucket, "error", err, "since_last_line", held)
		}
	}
	f.sweepConsumers(now, errs, log)
}

// consumerCreated is the server's advisory of a consumer made on the farm
// bucket's stream.
const consumerCreated = "$JS.EVENT.ADVISORY.CONSUMER.CREATED.KV_" + schema.ServersBucket + ".*"

// sweepConsumers deletes the consumers others made that outlive their use
// (SweepDurables).
func (f *ServersKV) sweepConsumers(now time.Time, errs *logging.Throttle, log *slog.Logger) {
	if n, err := f.SweepDurables(); n > 0 || err != nil {
		if held, ok := errs.Allow("durables", now); ok {
			log.Warn("durable consumers on the farm bucket deleted: watch it with nats kv watch, which needs none",
				"bucket", schema.ServersBucket, "deleted", n, "error", err, "since_last_line", held)
		}
	}
}
