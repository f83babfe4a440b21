// Package capacity answers "how many servers would have avoided it?": it
// fits a model of the farm to the recorded demand (internal/history) and
// replays the recorded arrivals against N+k servers through the real
// placement code (alloc.Registry on a simulated clock), with the waiting
// room, counting the visitors each farm would have turned away and how
// long the others would have waited.
package capacity

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/simgate/simgate/internal/history"
)

// Queue is the waiting room replayed (config queue).
type Queue struct {
	Enabled bool
	Max     int
	MaxWait time.Duration
}

// Model is the farm the history shows: Servers alike servers, each with
// a load of Base + PerSession × its sessions, full at Threshold; sessions
// of MeanLength in the mean (exponentially distributed: visitors leave at
// random); heartbeats every Interval.
type Model struct {
	Servers    int     `json:"servers"`
	Base       float64 `json:"baseLoad"`
	PerSession float64 `json:"loadPerSession"`
	Threshold  float64 `json:"threshold"`
	// MaxSessions is what the servers' agents report as their capacity
	// (0: not reported): the registry's first guess of a session's load.
	MaxSessions int           `json:"maxSessions,omitempty"`
	Interval    time.Duration `json:"-"`
	MeanLength  time.Duration `json:"-"`
	Queue       Queue         `json:"-"`
}

// Seats is how many sessions one server takes before it is full.
func (m Model) Seats() int {
	if m.PerSession <= 0 {
		return 0
	}
	return max(1, int(math.Ceil((m.Threshold-m.Base)/m.PerSession)))
}

// Demand is the recorded arrivals, one count per second from Start.
type Demand struct {
	Start    time.Time
	Arrivals []uint32
}

// Visitors is every arrival.
func (d Demand) Visitors() uint64 {
	var n uint64
	for _, a := range d.Arrivals {
		n += uint64(a)
	}
	return n
}

// ErrTooLittle says the history holds too little to fit a model: no
// session was seen to run, or no server was seen.
var ErrTooLittle = errors.New("the history holds no session run on a server seen: nothing to plan from yet")

// Fit makes the model and the demand from merged minutes (history.Merge),
// within [from, to).
func Fit(minutes []history.Minute, from, to time.Time, q Queue) (Model, Demand, error) {
	var fit history.Fit
	var servers, samples, interval, occupancy, begun, maxSessions, reporting float64
	var first, last time.Time
	var before, after float64 // sessions running when the window opens and when it closes
	var m Model
	for _, r := range minutes {
		if r.Start.Before(from.Truncate(time.Minute)) || !r.Start.Before(to) {
			continue
		}
		if first.IsZero() || r.Start.Add(time.Duration(r.From)*time.Second).Before(first) {
			first = r.Start.Add(time.Duration(r.From) * time.Second)
			before = r.Farm.First
		}
		if end := r.Start.Add(time.Duration(r.To) * time.Second); end.After(last) {
			last = end
			after = r.Farm.Last
		}
		fit = fit.Plus(r.Farm.Fit)
		servers += r.Farm.Servers
		samples += float64(r.Farm.Samples)
		interval += r.Farm.Interval
		occupancy += r.Farm.Occupancy
		begun += float64(r.Placed + r.Seated)
		maxSessions += r.Farm.MaxSessions
		reporting += r.Farm.Reporting
		if r.Farm.Threshold > 0 {
			m.Threshold = r.Farm.Threshold
		}
	}
	if samples == 0 || servers == 0 || occupancy == 0 || begun == 0 || m.Threshold == 0 {
		return Model{}, Demand{}, ErrTooLittle
	}
	m.Servers = max(1, int(math.Round(servers/samples)))
	m.Interval = time.Duration(interval / servers * float64(time.Second))
	// Little's law over the window: the session-seconds run in it over the
	// sessions that ended in it (begun, less those still running at its
	// end, plus those running at its start).
	ended := max(begun-after+before, begun/2)
	m.MeanLength = time.Duration(occupancy / ended * float64(time.Second))
	m.Queue = q
	if reporting > 0 {
		m.MaxSessions = int(math.Round(maxSessions / reporting))
	}
	base, slope, ok := fit.Line()
	if !ok || slope <= 0 {
		// One session count seen: the load is all sessions'.
		if fit.S <= 0 {
			return Model{}, Demand{}, ErrTooLittle
		}
		base, slope = 0, fit.L/fit.S
	}
	m.Base, m.PerSession = max(base, 0), slope
	d := Demand{Start: first, Arrivals: make([]uint32, int(last.Sub(first)/time.Second))}
	for _, r := range minutes {
		for s := r.From; s < r.To && s < len(r.Arrivals); s++ {
			i := int(r.Start.Add(time.Duration(s)*time.Second).Sub(first) / time.Second)
			if i >= 0 && i < len(d.Arrivals) {
				d.Arrivals[i] += r.Arrivals[s]
			}
		}
	}
	return m, d, nil
}

// Outcome is what one farm would have done with the demand.
type Outcome struct {
	Servers  int               `json:"servers"`
	Visitors uint64            `json:"visitors"`
	Placed   uint64            `json:"placed"` // at once
	Seated   uint64            `json:"seated"` // from the line
	Refused  uint64            `json:"refused"`
	Waiting  uint64            `json:"waitingAtEnd"` // in line when the record ends
	ByReason map[string]uint64 `json:"refusedBy,omitempty"`
	WaitP95  float64           `json:"waitP95Seconds"`
	WaitMean float64           `json:"waitMeanSeconds"`
}

func (o Outcome) String() string {
	return fmt.Sprintf("%d servers: %d visitors, %d placed, %d seated from the line, %d turned away, waits p95 %.0f s",
		o.Servers, o.Visitors, o.Placed, o.Seated, o.Refused, o.WaitP95)
}

// Row is the what-if for N+K servers.
type Row struct {
	K int `json:"k"`
	Outcome
}

// WhatIf replays d against m.Servers+k servers, k from −2 to +5 (at
// least one server), each replay on its own seed; reps replays each,
// averaged (1 if 0).
func WhatIf(m Model, d Demand, reps int) []Row {
	var out []Row
	for k := -2; k <= 5; k++ {
		if m.Servers+k < 1 {
			continue
		}
		out = append(out, Row{K: k, Outcome: Average(m, d, m.Servers+k, reps)})
	}
	return out
}

// Average is the mean outcome of reps replays on different seeds.
func Average(m Model, d Demand, servers, reps int) Outcome {
	reps = max(reps, 1)
	var sum Outcome
	sum.ByReason = map[string]uint64{}
	var p95 float64
	for i := range reps {
		o := Replay(m, d, servers, uint64(i+1))
		sum.Visitors = o.Visitors
		sum.Placed += o.Placed
		sum.Seated += o.Seated
		sum.Refused += o.Refused
		for k, v := range o.ByReason {
			sum.ByReason[k] += v
		}
		p95 += o.WaitP95
		sum.WaitMean += o.WaitMean
	}
	div := func(v uint64) uint64 { return uint64(math.Round(float64(v) / float64(reps))) }
	sum.Servers = servers
	sum.Placed, sum.Seated, sum.Refused = div(sum.Placed), div(sum.Seated), div(sum.Refused)
	for k, v := range sum.ByReason {
		sum.ByReason[k] = div(v)
	}
	sum.WaitP95, sum.WaitMean = p95/float64(reps), sum.WaitMean/float64(reps)
	return sum
}
