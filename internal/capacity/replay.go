package capacity

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// An event of a replay: a visitor's arrival or a session's end. The
// heartbeats come in a fixed round (beat k at k × interval / servers, of
// server k mod servers) and need no queue.
type event struct {
	at     time.Duration // since the demand's start
	end    bool
	server int
}

// events is a min-heap by time (container/heap's, without its boxing:
// the replay's hot loop).
type events []event

func (e *events) push(x event) {
	*e = append(*e, x)
	h := *e
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].at <= h[i].at {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (e *events) pop() event {
	h := *e
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].at < h[m].at {
			m = l
		}
		if r < len(h) && h[r].at < h[m].at {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*e = h
	return top
}

// idleBeats is how many heartbeats a server keeps sending while the whole
// farm is idle (no session, nobody waiting): enough for the registry to
// learn its idle load; then the replay skips to the next arrival.
const idleBeats = 10

// Replay runs the demand against servers servers of model m through
// alloc.Registry, the code /session places with, on a simulated clock:
// each server heartbeats every m.Interval on its own phase with its
// sessions and the load they make; a visitor no server takes waits in
// line (m.Queue) while some server is up, first come first seated, for
// at most Queue.MaxWait; sessions last an exponential time of mean
// m.MeanLength (seed picks them).
func Replay(m Model, d Demand, servers int, seed uint64) Outcome {
	epoch := d.Start
	clock := epoch
	names := make([]string, servers)
	for i := range names {
		names[i] = fmt.Sprintf("whatif%d/2000", i)
	}
	index := make(map[string]int, servers)
	for i, n := range names {
		index[n] = i
	}
	reg := alloc.New(alloc.Options{Servers: names, Threshold: m.Threshold, Seed: seed,
		Timeout: 1000 * time.Hour, Now: func() time.Time { return clock }})
	reg.Open()
	rng := rand.New(rand.NewPCG(seed, 0x5e55))
	interval := max(m.Interval, 100*time.Millisecond)
	running := make([]int, servers)
	quiet := 0 // beats since the farm was last busy
	out := Outcome{Servers: servers, Visitors: d.Visitors(), ByReason: map[string]uint64{}}
	var line []time.Duration // arrival times of those waiting, first first
	var waits []float64
	report := func(i int) {
		_ = reg.Apply(alloc.Report{Server: names[i], Status: alloc.StatusUp, Load: m.Base + m.PerSession*float64(running[i]),
			Sessions: running[i], MaxSessions: m.MaxSessions, Interval: interval, At: clock})
	}
	var q events
	for i := range servers {
		report(i)
	}
	beatStep := interval / time.Duration(servers)
	beatNo := int64(0) // the next heartbeat: at beatNo × beatStep, of server beatNo mod servers
	sec := 0           // the next second whose arrivals are queued
	queueSecond := func() {
		for ; sec < len(d.Arrivals); sec++ {
			if n := d.Arrivals[sec]; n > 0 {
				// Within its second, each at a random instant: given their
				// count, the arrivals of a Poisson process are uniform (spread
				// evenly, they would be smoother than visitors are).
				for range n {
					q.push(event{at: time.Duration(sec)*time.Second + time.Duration(rng.Float64()*float64(time.Second))})
				}
				sec++
				return
			}
		}
	}
	queueSecond()
	sessions := 0 // running, on every server
	seat := func(now time.Duration) bool {
		name, got := reg.Admit(alloc.Visitor{}, m.Queue.Enabled)
		if got != alloc.Placed {
			return false
		}
		i := index[name]
		running[i]++
		sessions++
		q.push(event{at: now + time.Duration(rng.ExpFloat64()*float64(m.MeanLength)), end: true, server: i})
		return true
	}
	seatLine := func(now time.Duration) {
		for len(line) > 0 && seat(now) {
			waits = append(waits, (now - line[0]).Seconds())
			line = line[1:]
			out.Seated++
		}
	}
	refuse := func(why string) { out.Refused++; out.ByReason[why]++ }
	horizon := time.Duration(len(d.Arrivals)) * time.Second
	for {
		beatAt := time.Duration(beatNo) * beatStep
		busy := sessions > 0 || len(line) > 0
		if len(q) == 0 && !busy && beatAt >= horizon {
			break
		}
		now := beatAt
		if len(q) > 0 && q[0].at < beatAt {
			now = q[0].at
		}
		// Those who waited their longest leave the line.
		for len(line) > 0 && m.Queue.MaxWait > 0 && now-line[0] >= m.Queue.MaxWait {
			line = line[1:]
			refuse("waited-too-long")
		}
		clock = epoch.Add(now)
		if now < beatAt {
			e := q.pop()
			if e.end {
				running[e.server]--
				sessions--
				continue
			}
			quiet = 0
			queueSecond()
			seatLine(e.at) // those in line first
			if len(line) == 0 || !m.Queue.Enabled {
				if seat(e.at) {
					out.Placed++
					continue
				}
			}
			switch {
			case !m.Queue.Enabled:
				refuse("full")
			case len(line) >= m.Queue.Max && m.Queue.Max > 0:
				refuse("line-full")
			default:
				line = append(line, e.at)
			}
			continue
		}
		report(int(beatNo % int64(servers)))
		seatLine(beatAt)
		beatNo++
		if busy {
			quiet = 0
		} else if quiet++; quiet > idleBeats*servers && len(q) > 0 {
			// The farm is idle: on to just before the next arrival, the
			// round of heartbeats kept.
			if skip := int64((q[0].at - 2*interval) / beatStep); skip > beatNo {
				beatNo = skip / int64(servers) * int64(servers)
			}
		}
	}
	out.Waiting = uint64(len(line)) // when the record ends
	if len(waits) > 0 {
		slices.Sort(waits)
		out.WaitP95 = waits[min(len(waits)-1, int(0.95*float64(len(waits))))]
		var sum float64
		for _, w := range waits {
			sum += w
		}
		out.WaitMean = sum / float64(len(waits))
	}
	return out
}
