// Package alloc is the registry of simulation servers and the placement of
// sessions on them. It knows servers, states, loads and reservations; it
// knows nothing of NATS, HTTP or e-mail: reports come in as Report values
// and state changes go out through a callback.
package alloc

import (
	"errors"
	"math"
	"math/rand/v2"
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
	Report = domain.Report
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

// Sharing is a server's repository policy (domain's).
type Sharing = domain.Sharing

// dedicated reports whether sh's server runs url at any load.
func dedicated(sh *Sharing, url string) bool { return hasPrefix(url, sh.Allowed) }

// shares reports whether sh's server may run url on its idle time. A URL
// normalURL could not read is blocked wherever anything is.
func shares(sh *Sharing, url string) bool {
	return sh.Docker && sh.ShareIdle > 0 && !blocks(sh, url)
}

// blocks reports whether sh's blockedRepositories refuse url.
func blocks(sh *Sharing, url string) bool {
	return hasPrefix(url, sh.Blocked) || (len(sh.Blocked) > 0 && isUnreadable(url))
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
	occupied  float64 // session-seconds run, every server (Occupied)
	noServer  uint64

	// deadlines[i] is when servers[i] is silent too long (ns since epoch,
	// mono; never when it is down or unknown): Sweep scans one packed array.
	deadlines []int64
	// epoch is the registry's start: deadlines count from it on the
	// monotonic clock, which a step of the wall clock does not move (a
	// step back of 48 h kept every server from being judged silent for
	// 48 h when they were wall-clock nanoseconds).
	epoch time.Time

	// holds remembers each address's unconfirmed bookings (PROTOCOL §1,
	// visitors.go); holdBytes is what they take, URLs included.
	holds      map[string]*addrHolds
	holdBytes  int
	holdsSwept time.Time
	// gen counts the changes to servers' states and loads (not the
	// bookings, which handedOut counts), ticks the Sweeps: holds and the
	// farm's free room are looked at again only when these moved.
	gen, ticks uint64
	genSeen    atomic.Uint64 // gen, for readers that take no lock (Generation)
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
	// graced is the latest silence deadline a grace gave (ns since epoch,
	// mono): a change of state keeps it (setDeadline).
	graced    int64
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
	lengths   lengths // how long its sessions last (lengths.go)
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
		epoch:   o.Now(),
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
	s := &server{name: name, heapIdx: -1, since: r.started, idx: len(r.servers), graced: math.MinInt64}
	s.res.init()
	r.servers = append(r.servers, s)
	r.deadlines = append(r.deadlines, never)
	r.byName[name] = s
	return s
}

// Threshold is the load at or above which a server takes no new session.
func (r *Registry) Threshold() float64 { return r.o.Threshold }
