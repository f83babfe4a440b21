package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/metrics"
	"github.com/simgate/simgate/internal/schema"
)

// Registry is what the bookings need of the registry: counting another
// member's placements (alloc.Registry.Booked drops those older than a
// booking's lapse) and knowing a configured server.
type Registry interface {
	Booked(server string, n int, at time.Time) bool
	Known(server string) bool
}

// BookingsOptions configures Bookings.
type BookingsOptions struct {
	Conn      *nats.Conn
	Subjects  schema.Subjects
	Self      string // this member's NATS server name
	Registry  Registry
	Metrics   *metrics.Metrics
	Interest  func(subject string) bool // whether anyone listens on a subject
	Clustered bool                      // send batches to, and count those of, other members
}

// NewBookings starts counting the other members' batches when clustered.
func NewBookings(o BookingsOptions) (*Bookings, error) {
	b := &Bookings{nc: o.Conn, subj: o.Subjects, self: o.Self, reg: o.Registry, metrics: o.Metrics,
		interest: o.Interest, clustered: o.Clustered, pending: map[string]int{}}
	if b.clustered {
		if err := b.subscribe(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// booking is what a coordinator publishes on <prefix>.booking.<node> for
// each session it hands out, when anyone listens (operators watch
// placements with nats sub 'simgate.booking.>').
type booking struct {
	Server string `json:"server"`
	Member string `json:"member"` // the NATS server name of the coordinator that placed it
	At     int64  `json:"at"`     // Unix nanoseconds
}

// batch is what a member sends the others: the sessions it placed on each
// server since its last batch.
type batch struct {
	Member  string         `json:"member"`
	At      int64          `json:"at"` // Unix nanoseconds of the oldest booking in it
	Servers map[string]int `json:"servers"`
	// Held is how long the oldest booking waited in the sender before the
	// batch left (nanoseconds, the sender's monotonic clock): the receiver
	// dates the batch on its own clock by it, so that members' clocks set
	// apart (a step of an hour dropped ~470 bookings as stale, issue 30)
	// change nothing. 0 from an older member: At is used.
	Held int64 `json:"held,omitempty"`
}

// flushEvery is how often a member sends its batch: a booking reaches the
// other members within about this, however many there are per second.
const flushEvery = time.Millisecond

// Bookings publishes placements: per node for whoever listens, and batched
// to the other members of a cluster, who count them (PROTOCOL §1's honest
// bookings, over the cluster). One message per booking to the members cost
// a member a third of its /session throughput on the load test's two cores;
// a batch a millisecond costs nothing measurable.
type Bookings struct {
	nc        *nats.Conn
	subj      schema.Subjects
	self      string
	reg       Registry
	metrics   *metrics.Metrics
	interest  func(subject string) bool
	clustered bool

	mu      sync.Mutex // guards pending and oldest (a leaf: nothing is called under it)
	pending map[string]int
	oldest  time.Time
	// subjects caches each server's booking subject: /session builds none.
	subjects sync.Map
}

// Placed is told of each session this coordinator hands out; it never
// blocks /session (a map increment, and a buffered write when listened to).
func (b *Bookings) Placed(server string) {
	now := time.Now()
	if b.clustered {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.oldest = now
		}
		b.pending[server]++
		b.mu.Unlock()
	}
	subject, ok := b.subjects.Load(server)
	if !ok {
		subject, _ = b.subjects.LoadOrStore(server, b.subj.Booking(server))
	}
	if subject := subject.(string); b.interest(subject) {
		data, _ := json.Marshal(booking{Server: server, Member: b.self, At: now.UnixNano()})
		if err := b.nc.Publish(subject, data); err != nil {
			b.metrics.BookingsLost.Inc()
		}
	}
}

// Run sends the batches until ctx ends.
func (b *Bookings) Run(ctx context.Context) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.mu.Lock()
			if len(b.pending) == 0 {
				b.mu.Unlock()
				continue
			}
			pending, oldest := b.pending, b.oldest
			b.pending = make(map[string]int, len(pending))
			b.mu.Unlock()
			b.send(pending, oldest)
		}
	}
}

// maxBatch bounds a batch's JSON under the embedded server's payload limit
// (a heartbeat's 4 KiB): a bigger one goes as several.
const maxBatch = 3 << 10

// send publishes pending as batches of at most maxBatch bytes.
func (b *Bookings) send(pending map[string]int, oldest time.Time) {
	bt := batch{Member: b.self, At: oldest.UnixNano(), Held: max(int64(time.Since(oldest)), 1), Servers: map[string]int{}}
	size := len(b.self) + 64
	flush := func() {
		if len(bt.Servers) == 0 {
			return
		}
		data, _ := json.Marshal(bt)
		if err := b.nc.Publish(b.subj.MemberBookings(), data); err != nil {
			n := 0
			for _, c := range bt.Servers {
				n += c
			}
			b.metrics.BookingsLost.Add(float64(n))
		}
		bt.Servers, size = map[string]int{}, len(b.self)+64
	}
	for server, n := range pending {
		if cost := len(server) + 16; size+cost > maxBatch {
			flush()
		}
		bt.Servers[server] = n
		size += len(server) + 16
	}
	flush()
}

// subscribe applies the other members' batches to the registry.
func (b *Bookings) subscribe() error {
	sub, err := b.nc.Subscribe(b.subj.MemberBookings(), func(m *nats.Msg) {
		var bt batch
		if json.Unmarshal(m.Data, &bt) != nil || bt.Member == b.self {
			return
		}
		at := time.Unix(0, bt.At) // an older member's: its wall clock
		if bt.Held > 0 {
			at = time.Now().Add(-time.Duration(bt.Held))
		}
		lag := time.Since(time.Unix(0, bt.At)).Seconds() // across members' wall clocks
		for server, n := range bt.Servers {
			if b.reg.Booked(server, n, at) {
				b.metrics.BookingsApplied.Add(float64(n))
			} else if b.reg.Known(server) {
				b.metrics.BookingsStale.Add(float64(n))
			}
		}
		if lag >= 0 && lag < 60 { // else the members' clocks are set apart
			b.metrics.BookingPropagation.Observe(lag)
		}
	})
	if err == nil {
		err = sub.SetPendingLimits(1<<16, 64<<20)
	}
	return err
}
