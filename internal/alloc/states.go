package alloc

// The state machine: reports, silence and lost connections move a
// server between the states of PROTOCOL §1; changes go out in order.

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Apply records a report and updates the server's state.
func (r *Registry) Apply(rep Report) error {
	r.mu.Lock()
	s, ok := r.byName[rep.Server]
	if !ok {
		if !r.open || rep.Polled || (len(r.o.Allowed) > 0 && !slices.Contains(r.o.Allowed, rep.Server)) {
			r.mu.Unlock()
			return fmt.Errorf("%w: %q", ErrUnknownServer, rep.Server)
		}
		s = r.add(rep.Server)
	}
	if rep.Polled {
		if r.agentSpeaks(s, rep.At) {
			r.mu.Unlock()
			return ErrAgentSpeaks
		}
	} else {
		s.agentAt = rep.At
		s.agentTO = rep.Interval * 3
		if r.o.Timeout > 0 {
			s.agentTO = r.o.Timeout
		}
	}
	prev := s.report
	rep.Sharing = normalized(rep.Sharing)
	if (prev.Sharing == nil) != (rep.Sharing == nil) {
		if rep.Sharing != nil {
			r.policies++
		} else {
			r.policies--
		}
	}
	s.report = rep
	s.seen = true
	s.lastAt = rep.At
	s.res.observe(prev, rep, r.sessionsPrior(rep))
	r.occupied += s.lengths.observe(rep, s.handed)
	to := r.stateFor(s, rep)
	var changes []Change
	if to != s.state {
		c := r.transition(s, to, r.reasonFor(s, rep), rep.At)
		c.Planned = rep.Status == StatusLeaving
		changes = append(changes, c)
	} else if to == Down {
		s.reason = r.reasonOf(rep)
	}
	r.reheap(s)
	r.emit(changes)
	return nil
}

// agentSpeaks reports whether an agent has spoken for s within its silence
// timeout at now; r.mu is held. Until it has been silent that long, the
// server is the agent's (down at once when its connection closed) and
// polling waits: PROTOCOL §2.
func (r *Registry) agentSpeaks(s *server, now time.Time) bool {
	return !s.agentAt.IsZero() && now.Sub(s.agentAt) < s.agentTO
}

// WantsPoll reports whether the coordinator should poll server's /load:
// it is configured and no agent speaks for it (PROTOCOL §2).
func (r *Registry) WantsPoll(server string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.byName[server]
	return ok && !r.agentSpeaks(s, now)
}

// stateOf is the state a report puts its server in.
func (r *Registry) stateOf(rep Report) State {
	switch rep.Status {
	case StatusLeaving, StatusServiceDown:
		return Down
	case StatusDraining:
		return Draining
	}
	if rep.Load >= r.o.Threshold {
		return Full
	}
	return Up
}

// stateFor is the state a report puts s in: an operator's drain holds an
// up or full server out of placement, whatever its agent says.
func (r *Registry) stateFor(s *server, rep Report) State {
	st := r.stateOf(rep)
	if s.drainedBy != "" && (st == Up || st == Full) {
		return Draining
	}
	return st
}

// reasonFor is reasonOf with an operator's drain.
func (r *Registry) reasonFor(s *server, rep Report) string {
	if st := r.stateOf(rep); s.drainedBy != "" && (st == Up || st == Full) {
		return "drained by " + s.drainedBy
	}
	return r.reasonOf(rep)
}

// SetDrained drains server on an operator's word (by names who; "" lifts
// it): it takes no new session, keeps its running ones, and shows "drained
// by <by>", until undrained, whatever its agent reports. A server that is
// down or not heard from yet is drained from its next report. It reports
// whether server is known.
func (r *Registry) SetDrained(server, by string) bool {
	r.mu.Lock()
	s, ok := r.byName[server]
	if !ok {
		r.mu.Unlock()
		return false
	}
	s.drainedBy = by
	var changes []Change
	if s.seen && s.state != Down && s.state != Unknown {
		if to := r.stateFor(s, s.report); to != s.state {
			changes = append(changes, r.transition(s, to, r.reasonFor(s, s.report), r.o.Now()))
		}
		r.reheap(s)
	}
	r.emit(changes)
	return true
}

// reasonOf says why, in words; only built on a change, off the hot path.
func (r *Registry) reasonOf(rep Report) string {
	switch rep.Status {
	case StatusLeaving:
		return "its agent stopped (planned)"
	case StatusServiceDown:
		if rep.Note != "" {
			return "its simulation server does not answer: " + rep.Note
		}
		return "its simulation server does not answer"
	case StatusDraining:
		return "its agent says it is draining"
	}
	if rep.Load >= r.o.Threshold {
		return fmt.Sprintf("load %.4g%% is at or above %.4g%%", rep.Load, r.o.Threshold)
	}
	return fmt.Sprintf("load %.4g%%", rep.Load)
}

// sessionsPrior is the load one session is assumed to add before any is observed.
func (r *Registry) sessionsPrior(rep Report) float64 {
	if rep.MaxSessions > 0 {
		return 100 / float64(rep.MaxSessions)
	}
	return 1
}

// ConnectionLost marks down at once a server whose agent's connection closed
// without a leaving heartbeat. Unknown names are ignored.
func (r *Registry) ConnectionLost(name string) {
	r.mu.Lock()
	s, ok := r.byName[name]
	if !ok || s.state == Down || s.state == Unknown || r.stalling(r.o.Now()) {
		r.mu.Unlock()
		return
	}
	c := r.transition(s, Down, "its agent's NATS connection closed", r.o.Now())
	r.reheap(s)
	r.emit([]Change{c})
}

// mono is t as a deadline: nanoseconds since the registry's epoch, on the
// monotonic clock when t has its reading (every time the coordinator
// takes from time.Now does).
func (r *Registry) mono(t time.Time) int64 { return int64(t.Sub(r.epoch)) }

// never is the deadline of a server that cannot go silent (down, unknown).
const never = math.MaxInt64

// setDeadline records when s will have been silent too long: a timeout
// after its last report, or later when a grace gave it more (Grace,
// GraceServers): a change of state (a drain applied) must not take the
// grace back (issue 30: a member back from a cut, applying the drains,
// judged both servers silent 50 ms later).
func (r *Registry) setDeadline(s *server) {
	if s.state == Down || s.state == Unknown {
		r.deadlines[s.idx] = never
		return
	}
	r.deadlines[s.idx] = max(r.mono(s.lastAt.Add(r.timeout(s))), s.graced)
}

// Sweep marks down every server silent for longer than its timeout at now,
// and forgets resolved holds once a second.
func (r *Registry) Sweep(now time.Time) {
	r.mu.Lock()
	r.ticks++
	r.lastSweep = now
	if now.Sub(r.holdsSwept) >= time.Second {
		r.pruneHolds(false)
		r.holdsSwept = now
	}
	var changes []Change
	t := r.mono(now)
	for i, d := range r.deadlines {
		if t <= d {
			continue
		}
		s := r.servers[i]
		limit := r.timeout(s)
		why := fmt.Sprintf("no heartbeat for %s", limit.Round(time.Millisecond))
		if s.report.Polled {
			why = fmt.Sprintf("its /load did not answer for %s", limit.Round(time.Millisecond))
		}
		changes = append(changes, r.transition(s, Down, why, now))
		r.reheap(s)
	}
	r.emit(changes)
}

func (r *Registry) timeout(s *server) time.Duration {
	if r.o.Timeout > 0 {
		return r.o.Timeout
	}
	return 3 * s.report.Interval
}

// transition changes s's state and returns the change; r.mu is held.
func (r *Registry) transition(s *server, to State, reason string, at time.Time) Change {
	c := Change{Server: s.name, From: s.state, To: to, Reason: reason, At: at,
		Load: s.report.Load, Vector: s.report.Vector, Reported: s.seen}
	s.state, s.reason, s.since = to, reason, at
	r.bumpGen()
	return c
}

// reheap puts s in or out of the placement heap after a change; r.mu is held.
func (r *Registry) reheap(s *server) {
	r.bumpGen()
	r.setDeadline(s)
	if s.state == Up {
		s.eff = s.res.effective(s.report)
		s.tie = r.rng.Uint64()
		if s.heapIdx < 0 {
			r.heap.push(s)
		} else {
			r.heap.fix(s.heapIdx)
		}
	} else if s.heapIdx >= 0 {
		r.heap.remove(s.heapIdx)
	}
	r.updateAvailable()
}

// updateAvailable recomputes availability; r.mu is held.
func (r *Registry) updateAvailable() {
	avail := !r.gated && len(r.heap) > 0 && r.heap[0].eff < r.o.Threshold
	if r.available.Load() != avail {
		r.available.Store(avail)
		next := make(chan struct{})
		close(*r.availCh.Swap(&next))
	}
}

// emit releases r.mu and hands changes to OnChange in order.
func (r *Registry) emit(changes []Change) {
	if len(changes) == 0 || r.o.OnChange == nil {
		r.mu.Unlock()
		return
	}
	r.emitMu.Lock()
	r.mu.Unlock()
	defer r.emitMu.Unlock()
	for _, c := range changes {
		r.o.OnChange(c)
	}
}
