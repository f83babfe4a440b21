package alloc

// How long sessions last, learnt from the session counts agents report:
// what the waiting room's estimate of a wait is made of (PROTOCOL §1.2).

import (
	"math"
	"time"
)

// lengthMemory is the time constant over which sessions' ends and
// occupancy are remembered: older ones fade, so a change of audience (a
// class's long sessions, visitors' short ones) shows within the hour.
const lengthMemory = time.Hour

// minEnds is how many sessions' ends (decayed) a server must have been
// seen to finish before its mean session length is believed.
const minEnds = 3

// lengths is what one server's reports say of its sessions' lengths:
// decayed sums of the sessions that ended and of the session-seconds run
// (Little's law: the mean length is the one over the other).
type lengths struct {
	ends, occupancy float64
	at              time.Time // the report the sums run to
	handed          uint64    // the server's sessions handed out then
	sessions        int       // its session count then
}

// observe takes report rep of a server that had handed sessions handed
// out by then. A session's end is a drop in the count that the sessions
// handed out since do not explain: count before + handed since − count
// now. A session handed out but not yet counted shows as an end now and
// as a start later; the two cancel in the sum, which is why it is signed.
//
// It returns the session-seconds run since the last report (Occupied).
func (l *lengths) observe(rep Report, handed uint64) (ran float64) {
	if rep.Sessions < 0 || rep.Polled {
		l.at = time.Time{}
		return 0
	}
	if !l.at.IsZero() {
		dt := rep.At.Sub(l.at)
		if dt <= 0 {
			return 0
		}
		fade := math.Exp(-dt.Seconds() / lengthMemory.Seconds())
		ran = float64(l.sessions) * dt.Seconds()
		l.occupancy = l.occupancy*fade + ran
		l.ends = l.ends*fade + float64(l.sessions) + float64(handed-l.handed) - float64(rep.Sessions)
	}
	l.at, l.handed, l.sessions = rep.At, handed, rep.Sessions
	return ran
}

// mean is the mean session length, ok once enough sessions ended.
func (l *lengths) mean() (time.Duration, bool) {
	if l.ends < minEnds || l.occupancy <= 0 {
		return 0, false
	}
	return time.Duration(l.occupancy / l.ends * float64(time.Second)), true
}

// EndRate is how many sessions per second end, in the mean, on the
// servers that would take a visitor asking for url and are up or full:
// each one's running sessions over its learnt mean length. ok is false
// until some such server has seen enough sessions end to say.
func (r *Registry) EndRate(url string) (perSecond float64, ok bool) {
	url = normalURL(url)
	repo := IsRepositoryURL(url)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.servers {
		if s.state != Up && s.state != Full {
			continue
		}
		if sh := s.report.Sharing; repo && sh != nil && !dedicated(sh, url) && !shares(sh, url) {
			continue
		}
		w, known := s.lengths.mean()
		if !known || s.report.Sessions <= 0 {
			continue
		}
		perSecond += float64(s.report.Sessions) / w.Seconds()
		ok = true
	}
	return perSecond, ok && perSecond > 0
}
