package alloc

import "time"

// maxPending bounds the reservations remembered per server.
const maxPending = 4096

// Bounds of the learned load of one session, in percent.
const (
	minPerSession = 0.25
	maxPerSession = 50
)

// How long the heartbeats take to show a session, in heartbeat intervals.
const (
	// countIntervals: a session handed out shows in the agent's session
	// count (its simulation process) within this; until then it is reserved.
	countIntervals = 3
	// blindIntervals replaces countIntervals for an agent that reports no
	// session count: the reservation waits for the load itself, which the
	// agent averages over five samples after the simulation has started.
	blindIntervals = 8
	// steadyIntervals: the session count has not changed for this long, so
	// the averaged load has caught up with it and can be learnt from.
	steadyIntervals = 7
)

// reservations estimates what a server's heartbeats cannot show yet.
//
// A session handed out reaches the reported load late: its simulation takes
// a moment to start and load the machine, and the agent reports the mean of
// its last five samples. Two estimates cover that lag:
//
//   - reservations: sessions handed out that the reported session count
//     cannot include yet, each counted at the learnt load of one session;
//   - the session model: idle load + per-session load × (sessions running +
//     reserved), which is where the load is heading while the average catches up.
//
// The effective load is the larger of reported load + reservations and the
// model. The load one session adds is learnt, per server, from reports whose
// session count has been steady long enough for the average to settle: an
// exponential moving average of (load − idle load) / sessions, bounded, with
// the prior 100 / maxSessions until the first sample.
type reservations struct {
	at          pending // placement times, oldest first
	popped      uint64  // reservations resolved so far: the sequence number of the oldest pending one
	base        int     // reported session count that the pending reservations come on top of
	perSession  float64 // load one session adds
	learned     bool
	idle        float64 // load seen with no session running, once steady
	idleSeen    bool
	stableSince time.Time // when the reported session count last changed
}

func (r *reservations) init() { r.perSession = 1 }

// add reserves a session handed out at t; sessions is the count last
// reported. It returns the reservation's sequence number.
func (r *reservations) add(t time.Time, sessions int) uint64 {
	if r.at.len() == 0 {
		r.base = max(sessions, 0)
	}
	if r.at.len() == maxPending {
		r.pop()
		r.base++
	}
	r.at.push(t)
	return r.popped + uint64(r.at.len()) - 1
}

func (r *reservations) pop() {
	r.at.pop()
	r.popped++
}

// unconfirmed reports whether reservation seq is still waiting: neither
// resolved nor covered by the growth of the reported session count (the
// oldest reservations are the first a growth covers).
func (r *reservations) unconfirmed(seq uint64, rep Report) bool {
	covered := uint64(r.at.len() - r.unseen(rep))
	return seq >= r.popped+covered && seq < r.popped+uint64(r.at.len())
}

// unseen is how many reservations the reported session count cannot
// include yet: those beyond its growth since the reservations began.
func (r *reservations) unseen(rep Report) int {
	if rep.Sessions < 0 {
		return r.at.len()
	}
	return max(0, r.at.len()-max(0, rep.Sessions-r.base))
}

// effective is the load rep will show once every session handed out does.
func (r *reservations) effective(rep Report) float64 {
	unseen := float64(r.unseen(rep))
	eff := rep.Load + unseen*r.perSession
	if rep.Sessions >= 0 {
		idle := 0.0
		if r.idleSeen {
			idle = r.idle
		}
		eff = max(eff, idle+r.perSession*(float64(rep.Sessions)+unseen))
	}
	return eff
}

// observe takes a new report: it expires the reservations the report now
// covers and refines the estimates.
func (r *reservations) observe(prev, rep Report, prior float64) {
	if !r.learned {
		r.perSession = prior
	}
	settle := settleFor(rep)
	for r.at.len() > 0 && rep.At.Sub(r.at.oldest()) >= settle {
		r.pop()
		r.base++ // expired: the count shows it by now
	}
	if r.at.len() == 0 {
		r.base = max(rep.Sessions, 0)
	}
	if rep.Sessions < 0 {
		return
	}
	if r.stableSince.IsZero() || rep.Sessions != prev.Sessions {
		r.stableSince = rep.At
	}
	if rep.At.Sub(r.stableSince) < steadyIntervals*rep.Interval || r.at.len() > 0 {
		return // the averaged load is still catching up
	}
	if rep.Sessions == 0 {
		r.idle = ewma(r.idle, rep.Load, r.idleSeen)
		r.idleSeen = true
		return
	}
	if r.idleSeen {
		sample := (rep.Load - r.idle) / float64(rep.Sessions)
		sample = min(max(sample, minPerSession), maxPerSession)
		r.perSession = ewma(r.perSession, sample, r.learned)
		r.learned = true
	}
}

// settleFor is how long after a booking rep's server shows it, or the
// booking lapses.
func settleFor(rep Report) time.Duration {
	switch {
	case rep.Polled:
		// A polled server's /load is its load now, and polls are seconds
		// apart: a booking lapses at the first poll half a period after it
		// (a settling time), so that it never holds the server back for
		// more than a poll and a half.
		return rep.Interval / 2
	case rep.Sessions < 0:
		return blindIntervals * rep.Interval
	}
	return countIntervals * rep.Interval
}

func ewma(old, sample float64, have bool) float64 {
	if !have {
		return sample
	}
	return 0.8*old + 0.2*sample
}

// pending is a queue of placement times in a ring that grows as needed:
// push, pop and oldest are O(1), so a flood of sessions between two
// heartbeats costs no more per request than a trickle.
type pending struct {
	buf  []time.Time
	head int
	n    int
}

func (p *pending) len() int { return p.n }

func (p *pending) oldest() time.Time { return p.buf[p.head] }

func (p *pending) pop() {
	p.buf[p.head] = time.Time{}
	p.head = (p.head + 1) % len(p.buf)
	p.n--
}

func (p *pending) push(t time.Time) {
	if p.n == len(p.buf) {
		grown := make([]time.Time, max(8, 2*len(p.buf)))
		for i := range p.n {
			grown[i] = p.buf[(p.head+i)%len(p.buf)]
		}
		p.buf, p.head = grown, 0
	}
	p.buf[(p.head+p.n)%len(p.buf)] = t
	p.n++
}
