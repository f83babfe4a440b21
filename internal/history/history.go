// Package history keeps a bounded record of the farm's demand: one record
// per coordinator per minute, in a JetStream stream the cluster shares
// (Stream), of the visitors arriving each second, those placed at once or
// seated from the waiting room, those turned away by reason, their waits,
// and the farm's servers, sessions and load as the member saw them.
// /monitor plots it over a day and a week (Plot); the capacity what-if
// (internal/capacity) replays it against more or fewer servers.
package history

import (
	"maps"
	"slices"
	"time"
)

// Minute is one member's record of one minute: the stream's message.
// Counts are of what this member did (summed over the members); the
// farm's fields (Servers and on) are what this member saw of the whole
// farm (the same on every member: Merge keeps one).
type Minute struct {
	V      int       `json:"v"`
	Member string    `json:"member"`
	Start  time.Time `json:"start"` // the minute's start, UTC
	// From and To are the seconds of the minute recorded, [From, To):
	// [0, 60) but for a member's first minute and the minute in progress.
	From     int      `json:"from"`
	To       int      `json:"to"`
	Arrivals []uint32 `json:"arrivals"`
	// Placed at once, seated from the line, turned away by reason
	// (metrics.RefusalReasons).
	Placed  uint64            `json:"placed"`
	Seated  uint64            `json:"seated"`
	Refused map[string]uint64 `json:"refused,omitempty"`
	// Waits of the visitors seated: their sum (seconds) and 95th percentile.
	WaitSum float64 `json:"waitSum"`
	WaitP95 float64 `json:"waitP95"`
	Farm    Farm    `json:"farm"`
}

// Farm is the farm as a member saw it over a minute, from samples of its
// registry.
type Farm struct {
	Samples   int     `json:"samples"`
	Servers   float64 `json:"servers"`   // servers up or full, summed over samples
	Sessions  float64 `json:"sessions"`  // sessions running, summed over samples
	Full      float64 `json:"full"`      // servers full, summed over samples
	Occupancy float64 `json:"occupancy"` // session-seconds run (from every report, not the samples)
	// First and Last are the sessions running at the minute's first and
	// last sample: those begun before it, and those still running after
	// it (Little's law over a window counts the sessions that ended in it).
	First     float64 `json:"first"`
	Last      float64 `json:"last"`
	Threshold float64 `json:"threshold"`
	Interval  float64 `json:"interval"` // the servers' heartbeat interval (seconds), summed over samples
	// MaxSessions is the capacity the servers' agents report, summed over
	// the Reporting servers sampled that report one.
	MaxSessions float64 `json:"maxSessions"`
	Reporting   float64 `json:"reporting"`
	// Load against sessions over every server sampled that reports both:
	// count, sums of sessions, load, sessions², sessions × load; the
	// what-if fits one server's load as base + perSession × sessions.
	Fit Fit `json:"fit"`
}

// Fit is the sums of a least-squares line.
type Fit struct {
	N, S, L, SS, SL float64
}

// Add takes one (sessions, load) point.
func (f *Fit) Add(sessions, load float64) {
	f.N++
	f.S += sessions
	f.L += load
	f.SS += sessions * sessions
	f.SL += sessions * load
}

// Plus is f and g together.
func (f Fit) Plus(g Fit) Fit {
	return Fit{f.N + g.N, f.S + g.S, f.L + g.L, f.SS + g.SS, f.SL + g.SL}
}

// Line is the least-squares line load = base + slope × sessions; ok is
// false with fewer than two distinct session counts.
func (f Fit) Line() (base, slope float64, ok bool) {
	d := f.N*f.SS - f.S*f.S
	if f.N < 2 || d <= 1e-9 {
		return 0, 0, false
	}
	slope = (f.N*f.SL - f.S*f.L) / d
	return (f.L - slope*f.S) / f.N, slope, true
}

// Visitors is every visitor the minute counts: arrivals.
func (m Minute) Visitors() uint64 {
	var n uint64
	for _, a := range m.Arrivals {
		n += uint64(a)
	}
	return n
}

// TurnedAway is the visitors turned away, every reason.
func (m Minute) TurnedAway() uint64 {
	var n uint64
	for _, v := range m.Refused {
		n += v
	}
	return n
}

// Merge puts the members' records of the same minutes together, in time
// order: counts and arrivals summed, the farm's fields from the member
// that sampled it most.
// A member's minute read twice (from the stream and from its recorder,
// around the moment it is kept) counts once: the one recorded longest.
// A member restarted within a minute recorded two parts of it, from
// different seconds on: both count.
func Merge(records []Minute) []Minute {
	type key struct {
		member string
		start  int64
		from   int
	}
	once := map[key]Minute{}
	for _, r := range records {
		k := key{r.Member, r.Start.Unix(), r.From}
		if o, ok := once[k]; !ok || r.To-r.From > o.To-o.From {
			once[k] = r
		}
	}
	by := map[int64]*Minute{}
	for _, r := range once {
		k := r.Start.Unix()
		m := by[k]
		if m == nil {
			c := r
			c.Member = ""
			c.Arrivals = slices.Clone(r.Arrivals)
			c.Refused = maps.Clone(r.Refused)
			by[k] = &c
			continue
		}
		for i, a := range r.Arrivals {
			if i >= len(m.Arrivals) {
				m.Arrivals = append(m.Arrivals, a)
			} else {
				m.Arrivals[i] += a
			}
		}
		m.From, m.To = min(m.From, r.From), max(m.To, r.To)
		m.Placed += r.Placed
		m.Seated += r.Seated
		if len(r.Refused) > 0 && m.Refused == nil {
			m.Refused = map[string]uint64{}
		}
		for k, v := range r.Refused {
			m.Refused[k] += v
		}
		m.WaitSum += r.WaitSum
		m.WaitP95 = max(m.WaitP95, r.WaitP95)
		if r.Farm.Samples > m.Farm.Samples {
			m.Farm = r.Farm
		}
	}
	out := make([]Minute, 0, len(by))
	for _, m := range by {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Minute) int { return a.Start.Compare(b.Start) })
	return out
}
