package alloc

// Placement: the least-loaded available server, a repository's world by
// its servers' sharing policies (PROTOCOL §1.1), and why a refusal.

import (
	"strings"
	"time"
)

// Place picks the available server with the lowest effective load and
// reserves a session on it for v. ok is false when no server is available.
// An address holds up to its cap of unconfirmed bookings; past it, v gets
// booked (visitors.go).
func (r *Registry) Place(v Visitor) (name string, ok bool) {
	name, out := r.Admit(v, false)
	return name, out == Placed
}

// Outcome is what Admit did with a visitor.
type Outcome uint8

// Outcomes of Admit.
const (
	Placed   Outcome = iota // booked on a server (or, not waiting, answered from a held booking)
	NoRoom                  // no server would take the visitor now
	AtCap                   // the visitor's address holds its cap of unconfirmed bookings (waiting visitors only)
	NotReady                // the registry is gated: the coordinator has not its state back
)

// Admit is Place for a visitor that may wait in line (PROTOCOL §1.2): with
// wait set, an address at its cap of unconfirmed bookings is told AtCap
// instead of being answered from a booking it holds, and books nothing.
func (r *Registry) Admit(v Visitor, wait bool) (name string, out Outcome) {
	v.URL = normalURL(v.URL)
	r.mu.Lock()
	if r.gated {
		r.noServer++
		r.mu.Unlock()
		return "", NotReady
	}
	if v.Addr != "" {
		if s, atCap := r.held(v, wait); atCap {
			if wait {
				r.mu.Unlock()
				return "", AtCap
			}
			r.repeated++
			r.mu.Unlock()
			return s.name, Placed
		}
	}
	var s *server
	tier := TierAny
	if r.policies > 0 && IsRepositoryURL(v.URL) {
		s, tier = r.pickFor(v.URL)
	} else if len(r.heap) > 0 && r.heap[0].eff < r.o.Threshold {
		s = r.heap[0]
	}
	if s == nil {
		r.noServer++
		r.mu.Unlock()
		return "", NoRoom
	}
	s.byTier[tier]++
	r.byTier[tier]++
	r.book(s, v)
	r.mu.Unlock()
	if r.o.OnBook != nil {
		r.o.OnBook(s.name)
	}
	return s.name, Placed
}

// Waitable reports whether a visitor asking for url may wait for a seat
// (PROTOCOL §1.2): at least one server that would take it (its sharing
// policy accepting url) is up, merely full or fully booked. Draining, down
// and never-heard servers free no seat. It scans the servers (O(n)): the
// refusal path only.
func (r *Registry) Waitable(url string) bool {
	url = normalURL(url)
	repo := IsRepositoryURL(url)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gated {
		return false
	}
	for _, s := range r.servers {
		if s.state != Up && s.state != Full {
			continue
		}
		sh := s.report.Sharing
		if !repo || sh == nil || dedicated(sh, url) || shares(sh, url) {
			return true
		}
	}
	return false
}

// Generation moves whenever a server's state or load may have freed room
// (a report, a lapse, a state change, another member's bookings): a line
// of waiting visitors is looked at again only when it moved.
// It takes no lock: /session asks it while visitors wait.
func (r *Registry) Generation() uint64 { return r.genSeen.Load() }

// bumpGen moves the generation; r.mu is held.
func (r *Registry) bumpGen() {
	r.gen++
	r.genSeen.Store(r.gen)
}

// Booked applies n bookings another coordinator of the cluster made on
// server: their load counts here as well, so that a burst spread over the
// members is spread over the servers too. It counts no placement of this
// coordinator's, and holds for no visitor.
//
// at is when they were made: news older than a booking's lapse (a member
// that was stopped and sends its backlog) is not applied, and neither is
// news from the future beyond a second of clock skew.
func (r *Registry) Booked(server string, n int, at time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.byName[server]
	if s == nil || !s.seen || n <= 0 {
		return false
	}
	now := r.o.Now()
	if age := now.Sub(at); age >= settleFor(s.report) || age < -time.Second {
		return false
	}
	for range min(n, maxPending) {
		s.res.add(now, s.report.Sessions)
	}
	s.eff = s.res.effective(s.report)
	r.bumpGen()
	if s.heapIdx >= 0 {
		r.heap.fix(s.heapIdx)
	}
	r.updateAvailable()
	return true
}

// book reserves a session on s for v; r.mu is held.
func (r *Registry) book(s *server, v Visitor) {
	seq := s.res.add(r.o.Now(), s.report.Sessions)
	s.eff = s.res.effective(s.report)
	s.tie = r.rng.Uint64()
	r.heap.fix(s.heapIdx)
	s.handed++
	r.handedOut++
	if v.Addr != "" {
		r.hold(s, seq, v)
	}
	r.updateAvailable()
}

// IsRepositoryURL reports whether url names a world in a repository, the
// form PROTOCOL §1.1 places by: https://github.com/… . Anything else
// (webots://, file://, nothing) is placed as without a URL.
func IsRepositoryURL(url string) bool {
	return strings.HasPrefix(url, "https://github.com/") || isUnreadable(url)
}

// pickFor chooses a server for a repository's world (PROTOCOL §1.1); r.mu
// is held. First the available servers dedicated to it (an
// allowedRepositories prefix of url), or that report no policy and so run
// every world, by the lowest effective load; else the available servers
// that share their idle time with it, by the largest shareIdleTime −
// effective load. It scans the placeable servers: O(n), where a request
// without a repository URL reads the heap's top.
func (r *Registry) pickFor(url string) (*server, Tier) {
	var best *server
	for _, s := range r.heap {
		sh := s.report.Sharing
		if s.eff >= r.o.Threshold || (sh != nil && !dedicated(sh, url)) {
			continue
		}
		if best == nil || s.eff < best.eff || (s.eff == best.eff && s.tie < best.tie) {
			best = s
		}
	}
	if best != nil {
		return best, TierDedicated
	}
	bestRoom := 0.0
	for _, s := range r.heap {
		sh := s.report.Sharing
		if sh == nil || s.eff >= r.o.Threshold || !shares(sh, url) {
			continue
		}
		// The simulation server checks its current load: the latest sample
		// plus the sessions handed out since, when the agent reports one.
		load := s.eff
		if in := s.report.InstantLoad; in != nil {
			load = max(load, *in+float64(s.res.unseen(s.report))*s.res.perSession)
		}
		// One session's load of headroom: sessions the count shows may still
		// be ramping up, which no report shows yet, and the simulation
		// server refuses a visitor once it is over.
		if load+s.res.perSession > sh.ShareIdle {
			continue
		}
		if room := sh.ShareIdle - load; best == nil || room > bestRoom {
			best, bestRoom = s, room
		}
	}
	return best, TierShared
}

// Tier is how a session was placed (PROTOCOL §1.1).
type Tier uint8

// Tiers, in the order they are tried.
const (
	TierAny       Tier = iota // no repository URL, or no policy on the farm: the lowest load
	TierDedicated             // a server dedicated to the repository, or one with no policy
	TierShared                // a server's shared idle time
	numTiers
)

var tierNames = [...]string{"any", "dedicated", "shared"}

func (t Tier) String() string { return tierNames[t] }

// Refusal says why a repository's world found no server.
type Refusal uint8

// Refusals, each with its own sentence for the visitor.
const (
	Busy      Refusal = iota // some server would run it, none can now
	Blocked                  // every server that reports a policy blocks it
	NotShared                // no server is dedicated to it and none shares its idle time
)

var refusalNames = [...]string{"busy", "blocked", "not-shared"}

func (r Refusal) String() string { return refusalNames[r] }

// BusyCause says why a busy farm took no visitor (simgate_refusals_total):
// "full" while a server is up (at its threshold, or booked to it), else
// "drained" while one is drained or draining, else "down" (none up, none
// heard). It runs on the refusal path only.
func (r *Registry) BusyCause() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	drained := false
	for _, s := range r.servers {
		switch s.state {
		case Up, Full:
			return "full"
		case Draining:
			drained = true
		}
	}
	if drained {
		return "drained"
	}
	return "down"
}

// Why explains a refused placement of url: Busy unless no server would
// ever run it. Servers that report no policy (or were never heard from)
// might, so they make it Busy. It runs on the refusal path only.
func (r *Registry) Why(url string) Refusal {
	url = normalURL(url)
	if !IsRepositoryURL(url) {
		return Busy
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	blocked := true
	for _, s := range r.servers {
		sh := s.report.Sharing
		if sh == nil || dedicated(sh, url) || shares(sh, url) {
			return Busy
		}
		if !blocks(sh, url) {
			blocked = false
		}
	}
	if blocked && len(r.servers) > 0 {
		return Blocked
	}
	return NotShared
}

// Peek is the server Place would pick now for url, booking nothing (HEAD /session).
func (r *Registry) Peek(url string) (name string, ok bool) {
	url = normalURL(url)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gated {
		return "", false
	}
	if r.policies > 0 && IsRepositoryURL(url) {
		if s, _ := r.pickFor(url); s != nil {
			return s.name, true
		}
		return "", false
	}
	if len(r.heap) == 0 || r.heap[0].eff >= r.o.Threshold {
		return "", false
	}
	return r.heap[0].name, true
}
