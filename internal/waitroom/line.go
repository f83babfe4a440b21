// Package waitroom is the line of visitors who wait for a seat when no
// server would take them now (PROTOCOL §1.2): tickets, places, first come
// first served, and the estimate of a wait. It knows the registry through
// the small Seats interface, and keeps the line in a Store: in memory for a
// lone coordinator, the cluster's replicated bucket for several (one line
// whichever member answered /session or holds the socket). It knows
// nothing of HTTP or WebSocket: the HTTP API holds each waiter's socket,
// tells it its place, and relays its session once the line seats it.
//
// Every member keeps a replica of the whole line, fed by its Store. The
// member holding a visitor's socket owns its entry (opens, starts,
// leaves, gives up); the member that leads seats: it offers the waiting
// visitors to its registry, oldest first, and writes the seat into the
// entry, which the owner reads and relays.
package waitroom

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// Seats is what the line needs of the registry.
type Seats interface {
	// Admit books a seat for v, or says why not (alloc.Registry.Admit).
	Admit(v alloc.Visitor, wait bool) (string, alloc.Outcome)
	// Peek is the server Admit would pick now, booking nothing; Capped
	// whether addr holds its cap of unconfirmed bookings.
	Peek(url string) (string, bool)
	Capped(addr string) bool
	// Waitable reports whether a server that would take url is up.
	Waitable(url string) bool
	// Generation moves whenever room may have freed.
	Generation() uint64
	// EndRate is how many sessions per second end on the servers that
	// would take url, once known.
	EndRate(url string) (float64, bool)
}

// Entry is one ticket as the members share it.
type Entry struct {
	Ticket string `json:"-"`
	URL    string `json:"url,omitempty"`
	Addr   string `json:"addr"`
	// Seq is the entry's place in the order: the store's sequence when it
	// was created, kept through every update.
	Seq uint64 `json:"seq,omitempty"`
	// Owner is the member that holds the visitor's socket, "" until opened.
	Owner   string `json:"owner,omitempty"`
	Started bool   `json:"started,omitempty"`
	// Seat is the server the leader seated the visitor on, until its owner
	// takes it (and deletes the entry).
	Seat string `json:"seat,omitempty"`
	// Rev is the store's revision of this version (not stored): an older
	// version arriving late is ignored.
	Rev uint64 `json:"-"`
}

// Store keeps the line's entries where every member sees them. It tells
// the line of every change, its own included, through Apply and Remove
// (possibly more than once, possibly late: the line keeps the newest).
type Store interface {
	// Create adds e, returning its revision (its Seq).
	Create(e Entry) (rev uint64, err error)
	// Claim makes owner the owner of e's ticket if e (at its revision) is
	// still its latest version and has none: false when another socket
	// claimed it first or it went. It returns the new version. The
	// compare is the store's (a follower's copy may lag).
	Claim(e Entry, owner string) (Entry, bool, error)
	// Put writes e whole, returning its revision.
	Put(e Entry) (rev uint64, err error)
	// Delete removes ticket.
	Delete(ticket string) error
}

// TicketTTL is how long a ticket waits for its socket (PROTOCOL §1.2).
const TicketTTL = 10 * time.Second

// openWait is how long a socket waits for its ticket to reach this member
// (another member gave it a moment ago; a loaded cluster's replication
// took over 2 s in CI).
const openWait = 5 * time.Second

// seatTTL is how long a seat given waits for its owner to take it before
// the leader lets the entry go (the owner is gone).
const seatTTL = 30 * time.Second

// Reason says why a visitor left the line without a seat.
type Reason uint8

// Reasons a visitor leaves the line unseated.
const (
	Closed   Reason = iota // it closed its socket
	GaveUp                 // it waited queue.maxWait
	NoServer               // no server that would take it is up any more
	Lapsed                 // its ticket's socket was not opened in time
	Failed                 // the seats given to it could not be reached
	Lost                   // the member holding its socket is gone
)

var reasonNames = [...]string{"closed", "max-wait", "no-server", "lapsed", "unreachable", "member-lost"}

func (r Reason) String() string { return reasonNames[r] }

// Options configures a Line.
type Options struct {
	Seats Seats
	// Store keeps the line; nil: in memory (a lone coordinator).
	Store Store
	// Self names this member (its NATS server ID); Lead reports whether
	// it seats visitors now (nil: always); Members, the members reached
	// now (nil: only this one). A lone coordinator leaves all three.
	Self    string
	Lead    func() bool
	Members func() map[string]bool
	// Max is how many visitors may wait (tickets not opened yet included);
	// PerAddress how many tickets one client address may hold.
	Max, PerAddress int
	// MaxWait is how long a visitor waits before it is told to try later.
	MaxWait time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Seated, when set, is told of every seat this member gives from the
	// line with how long its visitor waited; Left of every visitor that
	// left unseated, with why. Neither may call back into the line.
	Seated func(wait time.Duration)
	Left   func(why Reason)
	Logger *slog.Logger
}

// Waiter is one visitor whose socket this member holds, from its ticket
// to its seat.
type Waiter struct {
	Ticket  string
	Visitor alloc.Visitor
	seq     uint64
	issued  time.Time
	started bool
	done    bool // it left, was let go, or took its seat
	seated  bool // a seat was delivered
	tries   int  // seats given to it that could not be reached
	place   int
	changed chan struct{} // its place moved
	seat    chan string   // the server it is seated on
	out     chan Reason   // the line let it go unseated
}

// Changed fires when w's place moved (coalesced).
func (w *Waiter) Changed() <-chan struct{} { return w.changed }

// Seat delivers the server w is seated on, booked for it.
func (w *Waiter) Seat() <-chan string { return w.seat }

// Out delivers why the line let w go without a seat.
func (w *Waiter) Out() <-chan Reason { return w.out }

// Issued is when this member first knew w's ticket: its wait counts from then.
func (w *Waiter) Issued() time.Time { return w.issued }

// entry is a ticket in this member's replica of the line.
type entry struct {
	Entry
	seen     time.Time // when this member first knew it
	seatedAt time.Time // when its seat was given
}

// Line is the waiting room's line: first come, first served among the
// visitors a freed seat would take.
type Line struct {
	o     Options
	store Store
	// mu guards everything below but the atomics. The line calls the
	// registry under it (Line.mu → alloc.Registry.mu, LOCKS.md), never the
	// store: a store tells the line of changes, under its own calls.
	mu      sync.Mutex
	entries map[string]*entry
	order   []*entry // entries not seated, by Seq
	gone    map[string]uint64
	local   map[string]*Waiter // the sockets this member holds
	perAddr map[string]int
	// alive is the members reached at the last sweep (nil: all): an entry
	// whose owner is gone counts for no place while the leader lets it go.
	alive map[string]bool
	// gen is the registry's generation at the last pass; dirty: the line
	// changed since. Atomics, so that a pass with nothing to do takes no
	// lock (/session asks for one while visitors wait).
	gen   atomic.Uint64
	dirty atomic.Bool
	n     atomic.Int64
	// openWait is how long a socket waits for its ticket (openWait with a
	// shared store, 0 in memory).
	openWait time.Duration
}

// New builds a line.
func New(o Options) *Line {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Max <= 0 {
		o.Max = 1000
	}
	if o.PerAddress <= 0 {
		o.PerAddress = o.Max
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 30 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Self == "" {
		o.Self = "local" // a lone coordinator's sockets are owned all the same
	}
	l := &Line{o: o, entries: map[string]*entry{}, gone: map[string]uint64{}, local: map[string]*Waiter{}, perAddr: map[string]int{}}
	l.store, l.openWait = o.Store, openWait
	if l.store == nil {
		l.store, l.openWait = NewMemory(l), 0 // nothing on its way from elsewhere
	}
	return l
}

// Len is how many visitors wait (tickets not opened yet included). It
// takes no lock: /session asks it on every request.
func (l *Line) Len() int { return int(l.n.Load()) }

func (l *Line) leads() bool { return l.o.Lead == nil || l.o.Lead() }

// Issue gives v a ticket and a place at the end of the line; ok is false
// when the line is full, v's address holds its tickets, or the store
// cannot be written.
func (l *Line) Issue(v alloc.Visitor) (ticket string, ok bool) {
	l.mu.Lock()
	full := len(l.order) >= l.o.Max || l.perAddr[v.Addr] >= l.o.PerAddress
	l.mu.Unlock()
	if full {
		return "", false
	}
	var b [16]byte // 128 random bits: unguessable
	_, _ = rand.Read(b[:])
	ticket = hex.EncodeToString(b[:])
	e := Entry{Ticket: ticket, URL: v.URL, Addr: v.Addr}
	rev, err := l.store.Create(e)
	if err != nil {
		l.o.Logger.Warn("waiting room: a ticket could not be written to the line", "error", err)
		return "", false
	}
	e.Seq, e.Rev = rev, rev
	l.Apply(e)
	return ticket, true
}

// Open takes ticket's place in line for the socket that brings it: once,
// on whichever member. A ticket unknown, lapsed or already used opens
// nothing.
func (l *Line) Open(ticket string) (*Waiter, bool) {
	deadline := time.Now().Add(l.openWait) // real time: the store's propagation, whatever the line's clock
	for {
		l.mu.Lock()
		e := l.entries[ticket]
		l.mu.Unlock()
		if e != nil {
			break
		}
		if _, deleted := l.goneRev(ticket); deleted || !time.Now().Before(deadline) || len(ticket) != 32 {
			return nil, false
		}
		time.Sleep(20 * time.Millisecond) // another member's ticket on its way here
	}
	l.mu.Lock()
	var seen Entry
	if e := l.entries[ticket]; e != nil {
		seen = e.Entry
	}
	l.mu.Unlock()
	if seen.Ticket == "" || seen.Owner != "" {
		return nil, false
	}
	claimed, ok, err := l.store.Claim(seen, l.o.Self)
	if err != nil || !ok {
		return nil, false
	}
	l.mu.Lock()
	e := l.entries[ticket]
	if e == nil {
		l.mu.Unlock()
		return nil, false
	}
	w := &Waiter{Ticket: ticket, Visitor: alloc.Visitor{Addr: claimed.Addr, URL: claimed.URL}, seq: claimed.Seq, issued: e.seen,
		changed: make(chan struct{}, 1), seat: make(chan string, 1), out: make(chan Reason, 1)}
	l.local[ticket] = w
	l.mu.Unlock()
	l.Apply(claimed)
	return w, true
}

// Start marks w ready to be seated (its start message came) and looks
// for a seat for it at once.
func (l *Line) Start(w *Waiter) {
	l.mu.Lock()
	w.started = true
	e := l.entries[w.Ticket]
	var cp Entry
	if e != nil {
		cp = e.Entry
	}
	l.mu.Unlock()
	if e == nil {
		return
	}
	cp.Started = true
	if rev, err := l.store.Put(cp); err == nil {
		cp.Rev = rev
		l.Apply(cp)
	}
	l.Pass(false)
}

// Leave takes w out of the line (its visitor closed the socket); the ones
// behind it move up.
func (l *Line) Leave(w *Waiter) {
	l.mu.Lock()
	was := w.done
	w.done = true
	l.mu.Unlock()
	if !was {
		l.let(w.Ticket, Closed)
	}
}

// Taken says w's seat was taken by its socket: its entry leaves the line.
func (l *Line) Taken(w *Waiter) {
	_ = l.store.Delete(w.Ticket)
	l.Remove(w.Ticket, 0)
}

// Requeue puts w back at its place after the seat given to it could not be
// reached (its booking lapses as any unconfirmed one); false when it has
// failed too often or the store refuses, and it leaves the line.
func (l *Line) Requeue(w *Waiter) bool {
	l.mu.Lock()
	w.tries++
	tries := w.tries
	l.mu.Unlock()
	if tries >= 3 {
		l.left(Failed)
		return false
	}
	e := Entry{Ticket: w.Ticket, URL: w.Visitor.URL, Addr: w.Visitor.Addr, Seq: w.seq, Owner: l.o.Self, Started: true}
	rev, err := l.store.Put(e)
	if err != nil {
		l.left(Failed)
		return false
	}
	l.mu.Lock()
	delete(l.gone, w.Ticket)
	w.done, w.seated = false, false
	l.local[w.Ticket] = w
	l.mu.Unlock()
	e.Rev = rev
	l.Apply(e)
	return true
}

// let removes the ticket of a local waiter for why, and counts it.
func (l *Line) let(ticket string, why Reason) {
	_ = l.store.Delete(ticket)
	l.Remove(ticket, 0)
	l.left(why)
}

func (l *Line) left(why Reason) {
	if l.o.Left != nil {
		l.o.Left(why)
	}
}

// Position is w's place in line (1: next) and, once the line can tell,
// the expected wait for it: its place over the rate at which sessions end
// on the servers that would take it.
func (l *Line) Position(w *Waiter) (place int, wait time.Duration, known bool) {
	l.mu.Lock()
	place = w.place
	l.mu.Unlock()
	rate, ok := l.o.Seats.EndRate(w.Visitor.URL)
	if !ok {
		return place, 0, false
	}
	return place, time.Duration(float64(place) / rate * float64(time.Second)), true
}

// Stats is how many visitors wait and how long the oldest has.
func (l *Line) Stats() (waiting int, oldest time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) == 0 {
		return 0, 0
	}
	for _, e := range l.order {
		oldest = max(oldest, l.o.Now().Sub(e.seen))
	}
	return len(l.order), oldest
}
