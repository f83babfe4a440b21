package alloc

import "time"

// maxPending bounds the reservations remembered per server.
const maxPending = 4096

// Bounds of the learned load of one session, in percent.
const (
	minPerSession = 0.25
	maxPerSession = 50
)

// reservations counts the sessions handed out to a server that its
// heartbeats cannot show yet, and learns how much load one session adds.
//
// A reservation lives for settle intervals after it was made: agents report
// a load averaged over five samples and a simulation takes a moment to
// start, so a session shows in the reported load only gradually.
type reservations struct {
	at         []time.Time // placement times, oldest first
	perSession float64     // load one session adds, learned
	learned    bool
	idle       float64 // load seen with no session running
	idleSeen   bool
}

// settleIntervals is how many heartbeat intervals a reservation outlives its placement.
const settleIntervals = 3

func (r *reservations) init() { r.perSession = 1 }

func (r *reservations) add(t time.Time) {
	if len(r.at) == maxPending {
		r.at = r.at[1:]
	}
	r.at = append(r.at, t)
}

func (r *reservations) load() float64 { return float64(len(r.at)) * r.perSession }

// observe takes a new report: it expires the reservations the report
// should now show, and refines the per-session estimate.
func (r *reservations) observe(prev, rep Report, prior float64) {
	if !r.learned {
		r.perSession = prior
	}
	settle := settleIntervals * rep.Interval
	cut := 0
	for cut < len(r.at) && rep.At.Sub(r.at[cut]) >= settle {
		cut++
	}
	if cut > 0 {
		r.at = append(r.at[:0], r.at[cut:]...)
	}
	if rep.Sessions == 0 {
		r.idle = ewma(r.idle, rep.Load, r.idleSeen)
		r.idleSeen = true
		return
	}
	// Learn only from reports whose load has settled: same session count as
	// the previous one, so the averaged load has caught up.
	if rep.Sessions > 0 && prev.Sessions == rep.Sessions && r.idleSeen {
		sample := (rep.Load - r.idle) / float64(rep.Sessions)
		sample = min(max(sample, minPerSession), maxPerSession)
		r.perSession = ewma(r.perSession, sample, r.learned)
		r.learned = true
	}
}

func ewma(old, sample float64, have bool) float64 {
	if !have {
		return sample
	}
	return 0.8*old + 0.2*sample
}
