package history

import "time"

// Point is one step of a plot: the visitors that arrived in it and what
// became of them, and the farm's mean servers and sessions.
type Point struct {
	Start    time.Time `json:"start"`
	Visitors uint64    `json:"visitors"`
	Placed   uint64    `json:"placed"`
	Seated   uint64    `json:"seated"`
	Refused  uint64    `json:"refused"`
	WaitP95  float64   `json:"waitP95Seconds"` // the largest minute's
	Servers  float64   `json:"servers"`        // up or full, the mean
	Sessions float64   `json:"sessions"`       // running, the mean
	// MeanLength is the sessions' mean length (Little's law: the
	// session-seconds run over the sessions begun); 0 when none began.
	MeanLength float64 `json:"meanLengthSeconds"`
}

// Plot sums merged minutes (Merge) into the steps of span that ends at
// end, oldest first; a step with no record is zero.
func Plot(minutes []Minute, end time.Time, span, step time.Duration) []Point {
	n := int(span / step)
	first := end.Truncate(step).Add(step - span)
	out := make([]Point, n)
	samples := make([]float64, n)
	occupancy := make([]float64, n)
	for i := range out {
		out[i].Start = first.Add(time.Duration(i) * step).UTC()
	}
	for _, m := range minutes {
		i := int(m.Start.Sub(first) / step)
		if m.Start.Before(first) || i >= n {
			continue
		}
		p := &out[i]
		p.Visitors += m.Visitors()
		p.Placed += m.Placed
		p.Seated += m.Seated
		p.Refused += m.TurnedAway()
		p.WaitP95 = max(p.WaitP95, m.WaitP95)
		p.Servers += m.Farm.Servers
		p.Sessions += m.Farm.Sessions
		samples[i] += float64(m.Farm.Samples)
		occupancy[i] += m.Farm.Occupancy
	}
	for i := range out {
		if samples[i] > 0 {
			out[i].Servers /= samples[i]
			out[i].Sessions /= samples[i]
		}
		if begun := out[i].Placed + out[i].Seated; begun > 0 {
			out[i].MeanLength = occupancy[i] / float64(begun)
		}
	}
	return out
}
