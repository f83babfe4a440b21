// Package alloc is the registry of simulation servers and the placement of
// sessions on them. It knows servers, states, loads and reservations; it
// knows nothing of NATS, HTTP or e-mail: reports come in as Report values
// and state changes go out through a callback.
package alloc

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simgate/simgate/internal/domain"
)

// The words the registry shares with the mail policy, the transport and the
// HTTP API live in internal/domain; these are their names here.
type (
	State  = domain.State
	Status = domain.Status
	Vector = domain.Vector
	Change = domain.Change
)

// States and statuses (domain's).
const (
	Unknown  = domain.Unknown
	Up       = domain.Up
	Full     = domain.Full
	Down     = domain.Down
	Draining = domain.Draining

	StatusUp          = domain.StatusUp
	StatusDraining    = domain.StatusDraining
	StatusServiceDown = domain.StatusServiceDown
	StatusLeaving     = domain.StatusLeaving
)

// Report is one heartbeat, in the registry's words.
type Report struct {
	Server      string
	Status      Status
	Load        float64
	Vector      Vector
	Sessions    int // -1: not reported
	MaxSessions int // 0: not reported
	Interval    time.Duration
	Note        string // why the agent thinks its simulation server is unwell
	At          time.Time
	// Polled: the coordinator polled the server's /load (no agent speaks
	// for it); an agent's report always wins over a poll.
	Polled bool
	// Sharing is the server's own repository policy, nil when its agent
	// reports none: it then runs every world (PROTOCOL §1.1).
	Sharing *Sharing
	// InstantLoad is the agent's latest single sample, nil when not
	// reported: what the simulation server compares with its shareIdleTime.
	InstantLoad *float64
}

// Sharing is what a simulation server runs (its simulation.json): worlds
// under Allowed at any load; any other, not under Blocked, only with Docker
// and the load at or below ShareIdle.
type Sharing struct {
	Allowed, Blocked []string // URL prefixes
	Docker           bool
	ShareIdle        float64
}

// dedicated reports whether the server runs url at any load.
func (sh *Sharing) dedicated(url string) bool { return hasPrefix(url, sh.Allowed) }

// shares reports whether the server may run url on its idle time.
func (sh *Sharing) shares(url string) bool {
	return sh.Docker && sh.ShareIdle > 0 && !hasPrefix(url, sh.Blocked)
}

func hasPrefix(url string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(url, p) {
			return true
		}
	}
	return false
}

// Source says where a server's reports come from.
type Source uint8

// Sources of reports.
const (
	SourceNone  Source = iota // nothing heard yet
	SourceAgent               // an agent's heartbeats
	SourcePoll                // the coordinator polls /load (no agent)
)

var sourceNames = [...]string{"", "agent", "poll"}

func (s Source) String() string { return sourceNames[s] }

// ErrUnknownServer refuses a report for a server that is not configured.
var ErrUnknownServer = errors.New("server is not in simulationServers")

// ErrAgentSpeaks refuses a poll result for a server an agent speaks for.
var ErrAgentSpeaks = errors.New("an agent reports for this server")

// Options configures a Registry.
type Options struct {
	// Servers in configuration order. Empty: any server that reports is
	// added, or, when Allowed is set, any of those.
	Servers []string
	// Allowed, with no Servers, is the only entries that may be added (the
	// servers NATS users are bound to): a look-alike of one (sec1@test/2000
	// for sec1.test/2000, on the same subject token) is refused.
	Allowed []string
	// Threshold is the load at or above which a server takes no new session.
	Threshold float64
	// Timeout is the silence after which a server is down; 0: 3 × its last interval.
	Timeout time.Duration
	// OnChange receives every state change, in order, outside the registry's lock.
	OnChange func(Change)
	// OnBook, when set, is told of every session booked by Place (not of a
	// repeat that books nothing), outside the registry's lock.
	OnBook func(server string)
	// Seed makes tie-breaks reproducible in tests; 0 picks a random seed.
	Seed uint64
	// MaxBookingsPerAddress caps the unconfirmed bookings of one client
	// address (0: DefaultMaxBookingsPerAddress), further bounded by
	// BookingShare of the farm's free room.
	MaxBookingsPerAddress int
	// Gated keeps the registry from placing (and from saying it is
	// available) until Open: a coordinator that has not its state back yet
	// answers as a busy farm (PROTOCOL §1, /readyz).
	Gated bool
	// Now is the clock (time.Now when nil); the placement simulator runs
	// the registry on simulated time.
	Now func() time.Time
}

// Registry holds every server's latest report and places sessions.
type Registry struct {
	// mu guards everything below but the atomics; emitMu keeps OnChange
	// calls in order and is taken under mu, which is then released (emit):
	// the order is mu → emitMu → whatever OnChange takes (LOCKS.md).
	mu        sync.Mutex
	emitMu    sync.Mutex
	o         Options
	open      bool
	servers   []*server
	byName    map[string]*server
	heap      heap // servers in state Up, by effective load
	rng       *rand.Rand
	handedOut uint64
	noServer  uint64

	// deadlines[i] is when servers[i] is silent too long (Unix ns; never
	// when it is down or unknown): Sweep scans one packed array.
	deadlines []int64

	// holds remembers each address's unconfirmed bookings (PROTOCOL §1,
	// visitors.go); holdBytes is what they take, URLs included.
	holds      map[string]*addrHolds
	holdBytes  int
	holdsSwept time.Time
	// gen counts the changes to servers' states and loads (not the
	// bookings, which handedOut counts), ticks the Sweeps: holds and the
	// farm's free room are looked at again only when these moved.
	gen, ticks uint64
	// The farm's free room as last measured (visitors.go's freeRoom): at
	// generation roomGen and tick roomTick, when handedOut was roomHanded.
	room              float64
	roomGen, roomTick uint64
	roomHanded        uint64
	repeated          uint64
	byTier            [numTiers]uint64
	// gated: no placement until Open (Options.Gated).
	gated bool
	// lastSweep is the last Sweep; graceUntil the end of a Grace: while
	// either says the coordinator was not looking, a closed connection is
	// not a failure (ready.go).
	lastSweep, graceUntil time.Time
	// policies counts the servers whose last report carries a sharing
	// policy: while it is 0, a repository URL is placed as none.
	policies int

	available atomic.Bool
	availCh   atomic.Pointer[chan struct{}] // closed and replaced at each availability flip
	started   time.Time
}

type server struct {
	name      string
	state     State
	reason    string
	since     time.Time
	report    Report
	seen      bool // a report has arrived
	lastAt    time.Time
	handed    uint64
	byTier    [numTiers]uint64 // sessions handed out, by how they were placed
	drainedBy string           // the operator who drained it (SetDrained); "": not drained
	agentAt   time.Time        // the last agent heartbeat; zero: none since start
	agentTO   time.Duration    // that agent's silence timeout
	res       reservations
	eff       float64 // report.Load + reservations
	tie       uint64
	heapIdx   int // -1 when not in the heap
	idx       int // in servers and deadlines
}

// Visitor is who asks for a session: the client address (after trusted
// proxies) and the ?url= it asked with. The zero Visitor is anonymous:
// each of its requests books.
type Visitor struct {
	Addr string
	URL  string
}

// New builds a registry.
func New(o Options) *Registry {
	if o.Now == nil {
		o.Now = time.Now
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := &Registry{
		o:       o,
		open:    len(o.Servers) == 0,
		byName:  make(map[string]*server, len(o.Servers)),
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		holds:   map[string]*addrHolds{},
		gated:   o.Gated,
		started: o.Now(),
	}
	ch := make(chan struct{})
	r.availCh.Store(&ch)
	for _, name := range o.Servers {
		r.add(name)
	}
	return r
}

func (r *Registry) add(name string) *server {
	s := &server{name: name, heapIdx: -1, since: r.started, idx: len(r.servers)}
	s.res.init()
	r.servers = append(r.servers, s)
	r.deadlines = append(r.deadlines, never)
	r.byName[name] = s
	return s
}

// Threshold is the load at or above which a server takes no new session.
func (r *Registry) Threshold() float64 { return r.o.Threshold }

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
	rep.Sharing = rep.Sharing.normalized()
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

// never is the deadline of a server that cannot go silent (down, unknown).
const never = math.MaxInt64

// setDeadline records when s will have been silent too long.
func (r *Registry) setDeadline(s *server) {
	if s.state == Down || s.state == Unknown {
		r.deadlines[s.idx] = never
		return
	}
	r.deadlines[s.idx] = s.lastAt.Add(r.timeout(s)).UnixNano()
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
	t := now.UnixNano()
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
	r.gen++
	return c
}

// reheap puts s in or out of the placement heap after a change; r.mu is held.
func (r *Registry) reheap(s *server) {
	r.gen++
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

// Place picks the available server with the lowest effective load and
// reserves a session on it for v. ok is false when no server is available.
// An address holds up to its cap of unconfirmed bookings; past it, v gets
// one of them again, while its server would take v, and nothing more is
// booked (visitors.go).
func (r *Registry) Place(v Visitor) (name string, ok bool) {
	v.URL = normalURL(v.URL)
	r.mu.Lock()
	if r.gated {
		r.noServer++
		r.mu.Unlock()
		return "", false
	}
	if v.Addr != "" {
		if s, atCap := r.held(v); atCap {
			r.repeated++
			r.mu.Unlock()
			return s.name, true
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
		return "", false
	}
	s.byTier[tier]++
	r.byTier[tier]++
	r.book(s, v)
	r.mu.Unlock()
	if r.o.OnBook != nil {
		r.o.OnBook(s.name)
	}
	return s.name, true
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
	r.gen++
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
func IsRepositoryURL(url string) bool { return strings.HasPrefix(url, "https://github.com/") }

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
		if s.eff >= r.o.Threshold || (sh != nil && !sh.dedicated(url)) {
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
		if sh == nil || s.eff >= r.o.Threshold || !sh.shares(url) {
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
		if sh == nil || sh.dedicated(url) || sh.shares(url) {
			return Busy
		}
		if !hasPrefix(url, sh.Blocked) {
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
