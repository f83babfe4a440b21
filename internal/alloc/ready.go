package alloc

import (
	"context"
	"time"
)

// Open lets a gated registry place (Options.Gated): the coordinator has its
// state back. It is a no-op on a registry that places already.
func (r *Registry) Open() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gated = false
	r.updateAvailable()
}

// Gate closes the registry to placement again (Options.Gated) until the
// next Open: a cluster member that lost its majority cannot know the
// drains made meanwhile.
func (r *Registry) Gate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gated = true
	r.updateAvailable()
}

// Unheard lists the configured servers no report has come from since start.
func (r *Registry) Unheard() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.servers {
		if !s.seen {
			out = append(out, s.name)
		}
	}
	return out
}

// Known reports whether server is configured, or has reported.
func (r *Registry) Known(server string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.byName[server]
	return s != nil && s.seen
}

// Grace gives every server watched for silence one more timeout from now:
// a coordinator whose process stalled, or whose clock jumped, saw no
// heartbeat because it was not looking, not because none came.
func (r *Registry) Grace(now time.Time) { r.graceFor(now, 0) }

// StallGrace is the least time a coordinator back from a stall gives every
// server before judging its silence: a cluster member's routes to the
// others went stale while it was stopped, and the heartbeats of the
// agents that failed over meanwhile reach it only once they are made
// again (0.7 s seen on a loaded 2-core machine, against a 600 ms timeout:
// three false downs).
const StallGrace = 5 * time.Second

// graceFor is Grace with at least least from now.
func (r *Registry) graceFor(now time.Time, least time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.servers {
		if u := r.extendLocked(s, now, least); u.After(r.graceUntil) {
			r.graceUntil = u
		}
	}
}

// GraceServers gives these servers one more timeout from now before their
// silence is judged: the cluster member that held their agents'
// connections is gone, and the agents are failing over to another.
func (r *Registry) GraceServers(names []string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range names {
		if s := r.byName[name]; s != nil {
			r.extendLocked(s, now, 0)
		}
	}
}

// extendLocked moves s's silence deadline to one timeout (at least least)
// from now, if that is later, and returns that time (zero for a server not
// watched for silence); r.mu is held.
func (r *Registry) extendLocked(s *server, now time.Time, least time.Duration) time.Time {
	i := s.idx
	if r.deadlines[i] == never {
		return time.Time{}
	}
	u := now.Add(max(r.timeout(s), least))
	if d := r.mono(u); d > r.deadlines[i] {
		r.deadlines[i] = d
	}
	s.graced = max(s.graced, r.mono(u))
	return u
}

// StallGap is a gap between two Sweeps (100 ms apart in the coordinator)
// that only a stalled process or a jumped clock explains.
const StallGap = 2 * time.Second

// stalling says whether, at now, the coordinator is just back from a stall
// (no Sweep for StallGap, or within a Grace): its agents' connections
// closed because their pings went unanswered while it was stopped, and
// they are reconnecting. Such a close is no failure: the silence timeout
// judges them. r.mu is held.
func (r *Registry) stalling(now time.Time) bool {
	return (!r.lastSweep.IsZero() && now.Sub(r.lastSweep) > StallGap) || now.Before(r.graceUntil)
}

// Watch sweeps r every `every` until ctx ends (Sweep): a server unheard
// past its timeout goes down. A sweep that follows a stall of this
// process (SIGSTOP, a frozen machine) or a jump of the wall clock gives
// every server one more timeout, StallGrace at least, first (the
// heartbeats that came meanwhile wait in the sockets, or come once the
// routes are made again), and tells onStall. While judging says
// no (a cluster member cut off from its majority, which cannot tell a
// silent server from one whose agent is on the other side, issue 30), it
// judges none.
func (r *Registry) Watch(ctx context.Context, every time.Duration, judging func() bool, onStall func(now time.Time, gap, clock time.Duration)) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if gap, clock, ok := stalled(last, now); ok {
				r.graceFor(now, StallGrace)
				onStall(now, gap, clock)
			}
			last = now
			if !judging() {
				r.Grace(now)
			}
			r.Sweep(now)
		}
	}
}

// stalled says whether the sweep at now, after the one at last, follows a
// stall (gap, on the monotonic clock) or a jump of the wall clock, which
// heartbeats' times and the silence deadlines are on (clock, its gap).
func stalled(last, now time.Time) (gap, clock time.Duration, ok bool) {
	if last.IsZero() {
		return 0, 0, false
	}
	gap, clock = now.Sub(last), now.Round(0).Sub(last.Round(0))
	return gap, clock, gap > StallGap || clock > StallGap || clock < -time.Second || (clock-gap).Abs() > time.Second
}
