package alloc

// Views: what the registry says of the farm (availability, loads, counts).

import (
	"time"
)

// Available reports whether at least one server can take a session.
func (r *Registry) Available() bool { return r.available.Load() }

// AvailabilityChanged returns a channel closed at the next availability flip.
// Take it before reading Available, so that no flip falls between the two.
func (r *Registry) AvailabilityChanged() <-chan struct{} { return *r.availCh.Load() }

// MeanLoad is the mean reported load over the servers that report (up,
// full or draining); ok is false when none does.
func (r *Registry) MeanLoad() (mean float64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sum float64
	n := 0
	for _, s := range r.servers {
		if s.state == Up || s.state == Full || s.state == Draining {
			sum += s.report.Load
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// View is a copy of one server's state, for pages and APIs.
type View struct {
	Server      string
	State       State
	Reason      string
	Since       time.Time
	Load        float64
	Effective   float64
	Vector      Vector
	Sessions    int
	MaxSessions int
	Interval    time.Duration
	LastSeen    time.Time // zero: never
	HandedOut   uint64
	Note        string
	Status      Status   // of the last report
	Source      Source   // of the last report
	Sharing     *Sharing // of the last report; nil: none reported
	ByTier      [numTiers]uint64
	DrainedBy   string // the operator who drained it; "": not drained
}

// Drains is every server known, with who drained it ("" for none).
func (r *Registry) Drains() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.servers))
	for _, s := range r.servers {
		out[s.name] = s.drainedBy
	}
	return out
}

// Snapshot returns every server in configuration order.
func (r *Registry) Snapshot() []View {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]View, len(r.servers))
	for i, s := range r.servers {
		v := View{Server: s.name, State: s.state, Reason: s.reason, Since: s.since, HandedOut: s.handed,
			Sessions: -1, ByTier: s.byTier, Sharing: s.report.Sharing, DrainedBy: s.drainedBy}
		if s.seen {
			v.Load, v.Vector = s.report.Load, s.report.Vector
			v.Effective = s.res.effective(s.report)
			v.Sessions, v.MaxSessions = s.report.Sessions, s.report.MaxSessions
			v.Interval, v.LastSeen, v.Note, v.Status = s.report.Interval, s.lastAt, s.report.Note, s.report.Status
			v.Source = SourceAgent
			if s.report.Polled {
				v.Source = SourcePoll
			}
		}
		out[i] = v
	}
	return out
}

// Sample is one server up or full, as the demand history samples it.
type Sample struct {
	Load        float64
	Sessions    int // -1: not reported
	MaxSessions int
	Full        bool
	Interval    time.Duration
}

// Samples appends to dst the servers up or full now: the demand
// history's sample of the farm, each second, at no allocation once dst
// has grown (Snapshot copies far more).
func (r *Registry) Samples(dst []Sample) []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.servers {
		if s.state != Up && s.state != Full {
			continue
		}
		dst = append(dst, Sample{Load: s.report.Load, Sessions: s.report.Sessions, MaxSessions: s.report.MaxSessions,
			Full: s.state == Full, Interval: s.report.Interval})
	}
	return dst
}

// Occupied is the session-seconds run on every server since the registry
// began, as the reports' session counts say from one report to the next:
// the demand history's Little's law, exact to a heartbeat.
func (r *Registry) Occupied() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.occupied
}

// Counts returns the sessions handed out and the requests that found no server.
func (r *Registry) Counts() (handedOut, noServer uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handedOut, r.noServer
}

// Placed is how many sessions were placed in tier t.
func (r *Registry) Placed(t Tier) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byTier[t]
}

// Repeated is how many answers repeated a visitor's unconfirmed booking.
func (r *Registry) Repeated() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repeated
}

// Started is when the registry was built.
func (r *Registry) Started() time.Time { return r.started }
