package coordinator

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/capacity"
	"github.com/simgate/simgate/internal/cluster"
	"github.com/simgate/simgate/internal/history"
)

// waitBounds are the buckets of the seated visitors' waits the history
// keeps a percentile from (seconds).
var waitBounds = []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, math.Inf(1)}

// demand is what the history records, read from the coordinator's
// pieces: history.Sources.
type demand struct {
	c      *Coordinator
	mu     sync.Mutex // guards the waits (a leaf)
	seated uint64
	sum    float64
	counts []uint64 // per waitBounds bucket, not cumulative
	buf    []alloc.Sample
}

// seat counts a visitor seated from the line after wait.
func (d *demand) seat(wait time.Duration) {
	s := wait.Seconds()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.counts == nil {
		d.counts = make([]uint64, len(waitBounds))
	}
	d.seated++
	d.sum += s
	for i, b := range waitBounds {
		if s <= b {
			d.counts[i]++
			break
		}
	}
}

// Counters implements history.Sources.
func (d *demand) Counters() history.Counters {
	visitors, placed := d.c.api.Demand()
	c := history.Counters{Visitors: visitors, Placed: placed, Refused: d.c.metrics.TurnedAwayCounts(), Occupied: d.c.reg.Occupied()}
	d.mu.Lock()
	defer d.mu.Unlock()
	c.Seated, c.WaitSum = d.seated, d.sum
	var cum uint64
	for i, b := range waitBounds {
		if i < len(d.counts) {
			cum += d.counts[i]
		}
		le := b
		if math.IsInf(b, 1) {
			le = 2 * waitBounds[len(waitBounds)-2]
		}
		c.Waits = append(c.Waits, history.Bucket{Le: le, Count: cum})
	}
	return c
}

// Servers implements history.Sources: the servers up or full now. The
// recorder calls it from one goroutine: the buffer is reused.
func (d *demand) Servers() ([]history.ServerSample, float64) {
	d.buf = d.c.reg.Samples(d.buf[:0])
	return d.buf, d.c.reg.Threshold()
}

// startHistory starts recording the farm's demand into the cluster's
// history stream, and the planner that serves it (/api/capacity,
// simgate.api.capacity).
func (c *Coordinator) startHistory() error {
	stream, err := history.NewStream(c.stateConn, c.subj, cluster.Replicas(c.members))
	if err != nil {
		return err
	}
	rec := history.NewRecorder(history.Options{Member: c.nats.Name(), Sources: c.demand, Sink: stream,
		Logger: c.log.With("component", "history")})
	q := c.cfg.Queue
	c.planner = capacity.NewPlanner(capacity.PlannerOptions{
		Queue:  capacity.Queue{Enabled: q.Enabled, Max: q.Max, MaxWait: q.MaxWait},
		Logger: c.log.With("component", "capacity"),
		Read: func(ctx context.Context, since time.Time) ([]history.Minute, error) {
			kept, _, err := stream.Read(ctx, since)
			return append(kept, rec.Current()...), err // what is not kept yet too
		},
	})
	c.spawn(rec.Run)
	return nil
}

// capacityDoc is the capacity document, the history read within 5 s;
// brief: without its plots.
func (c *Coordinator) capacityDoc(brief bool) []byte {
	ctx, cancel := context.WithTimeout(c.runCtx, 5*time.Second)
	defer cancel()
	doc, short := c.planner.Document(ctx)
	if brief {
		return short
	}
	return doc
}
