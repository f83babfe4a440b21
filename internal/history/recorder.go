package history

import (
	"context"
	"github.com/simgate/simgate/internal/alloc"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// Counters are what a coordinator has counted since it started: the
// recorder keeps their changes minute by minute.
type Counters struct {
	Visitors uint64            // visitors who asked /session for a session
	Placed   uint64            // placed at once
	Seated   uint64            // seated from the waiting room's line
	WaitSum  float64           // seconds the seated visitors waited, summed
	Waits    []Bucket          // the seated visitors' waits, a cumulative histogram
	Refused  map[string]uint64 // turned away, by reason
	// Occupied is the session-seconds run on every server, as their
	// reports' session counts say (alloc.Registry.Occupied).
	Occupied float64
}

// Bucket is a cumulative histogram bucket: Count waits of at most Le seconds.
type Bucket struct {
	Le    float64
	Count uint64
}

// ServerSample is one server up or full in a sample of the farm.
type ServerSample = alloc.Sample

// Sources is what the recorder reads: the coordinator's counters, and
// the servers up or full now with the load threshold.
type Sources interface {
	Counters() Counters
	Servers() (servers []ServerSample, threshold float64)
}

// Sink keeps a closed minute (Stream).
type Sink interface {
	Publish(ctx context.Context, m Minute) error
}

// Options configures a Recorder.
type Options struct {
	Member  string // this coordinator's name in the cluster
	Sources Sources
	Sink    Sink
	Logger  *slog.Logger
	// SampleEvery is how often the farm is sampled (default every second:
	// a session's length is learnt from them).
	SampleEvery time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// maxUnkept is how many closed minutes wait for the stream (an hour): a
// cluster without quorum keeps them until it is back.
const maxUnkept = 60

// Recorder counts the farm's demand minute by minute and keeps each
// minute in the Sink once it is over.
type Recorder struct {
	o      Options
	mu     sync.Mutex // guards everything below (a leaf)
	cur    Minute
	base   Counters  // the counters when cur began
	seen   uint64    // the visitors counted at the last tick
	sample time.Time // when the farm was last sampled
	unkept []Minute
	lost   uint64
}

// NewRecorder starts recording now; Run ticks it.
func NewRecorder(o Options) *Recorder {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Recorder{o: o}
	c := o.Sources.Counters()
	r.base, r.seen = c, c.Visitors
	r.cur = r.open(o.Now())
	return r
}

// Version is the record's format.
const Version = 1

func (r *Recorder) open(now time.Time) Minute {
	start := now.UTC().Truncate(time.Minute)
	return Minute{V: Version, Member: r.o.Member, Start: start, Arrivals: make([]uint32, 60),
		From: int(now.Sub(start) / time.Second), To: 60}
}

// Run ticks every second until ctx ends, then keeps the minute in
// progress (a stop or an upgrade loses none).
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Tick(r.o.Now())
			r.mu.Lock()
			m := r.close(r.o.Sources.Counters())
			m.To = min(60, int(r.o.Now().Sub(m.Start)/time.Second)+1) // the next process records the rest
			r.unkept = append(r.unkept, m)
			r.mu.Unlock()
			kctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			r.keep(kctx)
			cancel()
			return
		case <-t.C:
			r.Tick(r.o.Now())
			kctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			r.keep(kctx)
			cancel()
		}
	}
}

// Tick counts the visitors since the last tick in the current second,
// samples the farm when due, and closes the minute once over.
func (r *Recorder) Tick(now time.Time) {
	c := r.o.Sources.Counters()
	var servers []ServerSample
	var threshold float64
	r.mu.Lock()
	due := now.Sub(r.sample) >= r.o.SampleEvery
	r.mu.Unlock()
	if due {
		servers, threshold = r.o.Sources.Servers()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sec := int(now.Sub(r.cur.Start) / time.Second)
	if sec >= 60 {
		// Arrivals since the last tick belong to the minute that ends.
		r.cur.Arrivals[59] += uint32(c.Visitors - r.seen)
		r.seen = c.Visitors
		r.unkept = append(r.unkept, r.close(c))
		if len(r.unkept) > maxUnkept {
			r.unkept = r.unkept[1:]
			r.lost++
		}
		r.cur = r.open(now)
		sec = int(now.Sub(r.cur.Start) / time.Second)
	}
	r.cur.Arrivals[min(max(sec, 0), 59)] += uint32(c.Visitors - r.seen)
	r.seen = c.Visitors
	if due {
		r.sample = now
		addSample(&r.cur.Farm, servers, threshold)
	}
}

func addSample(f *Farm, servers []ServerSample, threshold float64) {
	f.Samples++
	f.Threshold = threshold
	f.Last = 0
	for _, s := range servers {
		f.Servers++
		f.Interval += s.Interval.Seconds()
		if s.Full {
			f.Full++
		}
		if s.MaxSessions > 0 {
			f.MaxSessions += float64(s.MaxSessions)
			f.Reporting++
		}
		if s.Sessions >= 0 {
			f.Sessions += float64(s.Sessions)
			f.Last += float64(s.Sessions)
			f.Fit.Add(float64(s.Sessions), s.Load)
		}
	}
	if f.Samples == 1 {
		f.First = f.Last
	}
}

// close ends the current minute at counters c, which the next one counts
// from; r.mu is held.
func (r *Recorder) close(c Counters) Minute {
	m := r.upTo(c)
	r.base = c
	r.base.Refused = maps.Clone(c.Refused)
	return m
}

// upTo is the current minute as counters c make it; r.mu is held.
func (r *Recorder) upTo(c Counters) Minute {
	m := r.cur
	m.Arrivals = append([]uint32(nil), r.cur.Arrivals...)
	m.Placed = c.Placed - r.base.Placed
	m.Seated = c.Seated - r.base.Seated
	m.WaitSum = c.WaitSum - r.base.WaitSum
	m.Farm.Occupancy = max(c.Occupied-r.base.Occupied, 0)
	m.WaitP95 = p95(c.Waits, r.base.Waits)
	for k, v := range c.Refused {
		if d := v - r.base.Refused[k]; d > 0 {
			if m.Refused == nil {
				m.Refused = map[string]uint64{}
			}
			m.Refused[k] = d
		}
	}
	return m
}

// p95 is the 95th percentile of the waits between two cumulative
// histograms: the bound of the first bucket that holds it.
func p95(now, before []Bucket) float64 {
	if len(now) == 0 {
		return 0
	}
	count := func(i int) uint64 {
		if i < len(before) {
			return now[i].Count - before[i].Count
		}
		return now[i].Count
	}
	total := count(len(now) - 1)
	if total == 0 {
		return 0
	}
	for i := range now {
		if float64(count(i)) >= 0.95*float64(total) {
			return now[i].Le
		}
	}
	return now[len(now)-1].Le
}

// keep hands the closed minutes to the Sink, oldest first, until one fails.
func (r *Recorder) keep(ctx context.Context) {
	if r.o.Sink == nil {
		r.mu.Lock()
		r.unkept = nil
		r.mu.Unlock()
		return
	}
	for {
		r.mu.Lock()
		if len(r.unkept) == 0 {
			lost := r.lost
			r.lost = 0
			r.mu.Unlock()
			if lost > 0 {
				r.o.Logger.Warn("demand history: minutes not kept (the store was out of reach for over an hour)", "minutes", lost)
			}
			return
		}
		m := r.unkept[0]
		r.mu.Unlock()
		if err := r.o.Sink.Publish(ctx, m); err != nil {
			r.o.Logger.Debug("demand history: cannot keep a minute yet; will retry", "start", m.Start, "error", err)
			return
		}
		r.mu.Lock()
		if len(r.unkept) > 0 && r.unkept[0].Start.Equal(m.Start) {
			r.unkept = r.unkept[1:]
		}
		r.mu.Unlock()
	}
}

// Current is what this member recorded and has not kept yet: the minutes
// waiting for the stream and the minute in progress so far.
func (r *Recorder) Current() []Minute {
	c := r.o.Sources.Counters()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Minute, 0, len(r.unkept)+1)
	out = append(out, r.unkept...)
	m := r.upTo(c)
	// The visitors since the last tick, in the second they are in.
	now := r.o.Now()
	m.Arrivals[min(max(int(now.Sub(m.Start)/time.Second), 0), 59)] += uint32(c.Visitors - r.seen)
	m.To = min(60, int(now.Sub(m.Start)/time.Second)+1)
	return append(out, m)
}

// Registry is what Parts reads of the registry (alloc.Registry).
type Registry interface {
	Samples(dst []alloc.Sample) []alloc.Sample
	Threshold() float64
	Occupied() float64
}

// Parts is Sources made of a coordinator's pieces.
type Parts struct {
	Demand   func() (visitors, placed uint64) // httpapi's
	Refused  func() map[string]uint64         // metrics' turned away, by reason
	Registry Registry
	Waits    *Waits
	buf      []alloc.Sample // Servers' (one caller: the recorder)
}

// Counters implements Sources.
func (p *Parts) Counters() Counters {
	visitors, placed := p.Demand()
	c := Counters{Visitors: visitors, Placed: placed, Refused: p.Refused(), Occupied: p.Registry.Occupied()}
	p.Waits.Fill(&c)
	return c
}

// Servers implements Sources: the servers up or full now.
func (p *Parts) Servers() ([]ServerSample, float64) {
	p.buf = p.Registry.Samples(p.buf[:0])
	return p.buf, p.Registry.Threshold()
}
