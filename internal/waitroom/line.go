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
	"errors"
	"log/slog"
	"maps"
	"slices"
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

// Reasons lists every reason, for metrics that show them all from the start.
func Reasons() []Reason { return []Reason{Closed, GaveUp, NoServer, Lapsed, Failed, Lost} }

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

// Apply takes a version of an entry from the store: a new ticket, an
// owner, a start, a seat. An older version than the one held is ignored.
func (l *Line) Apply(v Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev, deleted := l.gone[v.Ticket]; deleted && v.Rev <= rev {
		return
	}
	if v.Seq == 0 {
		v.Seq = v.Rev
	}
	e := l.entries[v.Ticket]
	if e == nil {
		e = &entry{Entry: v, seen: l.o.Now()}
		l.entries[v.Ticket] = e
		l.perAddr[v.Addr]++
		if v.Seat == "" {
			l.insertLocked(e)
		}
	} else {
		if v.Rev != 0 && v.Rev < e.Rev {
			return
		}
		wasSeated := e.Seat != ""
		e.Entry = v
		switch {
		case wasSeated && v.Seat == "":
			l.insertLocked(e)
		case !wasSeated && v.Seat != "":
			l.unlinkLocked(e)
			e.seatedAt = l.o.Now()
		}
	}
	if w := l.local[v.Ticket]; w != nil && v.Seat != "" && v.Owner == l.o.Self && !w.seated && !w.done {
		w.seated, w.done = true, true
		w.seat <- v.Seat
	}
	l.dirty.Store(true)
	l.renumberLocked()
}

// Remove takes ticket out of the line (the store deleted it at revision
// rev; 0: this member did). A waiter of this member still waiting is let
// go: the leader found it lapsed or its seat never taken.
func (l *Line) Remove(ticket string, rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev == 0 {
		rev = ^uint64(0) >> 1 // this member's own delete: nothing older comes back
	}
	if old, ok := l.gone[ticket]; !ok || rev > old {
		l.gone[ticket] = rev
	}
	if len(l.gone) > 4*l.o.Max+1024 {
		clear(l.gone) // tombstones of a busy day: a late version is merely a lapse later
	}
	e := l.entries[ticket]
	if e == nil {
		return
	}
	delete(l.entries, ticket)
	if l.perAddr[e.Addr]--; l.perAddr[e.Addr] <= 0 {
		delete(l.perAddr, e.Addr)
	}
	l.unlinkLocked(e)
	if w := l.local[ticket]; w != nil {
		delete(l.local, ticket)
		if !w.done {
			w.done = true
			select {
			case w.out <- NoServer:
			default:
			}
		}
	}
	l.dirty.Store(true)
	l.renumberLocked()
}

func (l *Line) goneRev(ticket string) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rev, ok := l.gone[ticket]
	return rev, ok
}

// Pass seats the visitors a seat has freed for, in the order they came,
// when this member leads: each started waiter, oldest first, is offered
// to the registry; a world that found no room, or an address at its cap,
// is not asked again in the same pass. Nothing is done unless the
// registry's generation moved or the line changed since the last pass
// (force: look anyway).
func (l *Line) Pass(force bool) {
	gen := l.o.Seats.Generation()
	if !force && !l.dirty.Load() && gen == l.gen.Load() {
		return
	}
	if !l.leads() {
		return
	}
	l.mu.Lock()
	if len(l.order) == 0 {
		l.mu.Unlock()
		return
	}
	l.gen.Store(gen)
	l.dirty.Store(false)
	var noRoom, capped map[string]bool
	var seats []Entry
	now := l.o.Now()
	for _, e := range slices.Clone(l.order) {
		if !e.Started || e.Owner == "" || noRoom[e.URL] || capped[e.Addr] || (l.alive != nil && !l.alive[e.Owner]) {
			continue
		}
		server, out := l.o.Seats.Admit(alloc.Visitor{Addr: e.Addr, URL: e.URL}, true)
		switch out {
		case alloc.Placed:
			l.unlinkLocked(e)
			e.Seat, e.seatedAt = server, now
			seats = append(seats, e.Entry)
			if l.o.Seated != nil {
				l.o.Seated(now.Sub(e.seen))
			}
		case alloc.AtCap:
			if capped == nil {
				capped = map[string]bool{}
			}
			capped[e.Addr] = true
		default:
			if noRoom == nil {
				noRoom = map[string]bool{}
			}
			noRoom[e.URL] = true
		}
	}
	if len(seats) > 0 {
		l.renumberLocked()
	}
	l.mu.Unlock()
	for _, s := range seats {
		rev, err := l.store.Put(s)
		if err != nil {
			// The seat's booking lapses as any unconfirmed one; the visitor
			// waits on at its place.
			l.o.Logger.Warn("waiting room: a seat could not be written to the line", "server", s.Seat, "error", err)
			s.Seat = ""
			l.Apply(s)
			continue
		}
		s.Rev = rev
		l.Apply(s)
	}
}

// Blocks reports whether a visitor who came now would take a seat that
// someone in line could have: first come, first served across members
// (the one that leads seats the line; the others send a newcomer to the
// back while a waiting visitor could be seated). The member that leads
// has just passed over the line: nobody there is seatable.
func (l *Line) Blocks() bool {
	if l.Len() == 0 || l.leads() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	asked := 0
	tried := map[string]bool{}
	for _, e := range l.order {
		if !e.Started || tried[e.URL] || l.o.Seats.Capped(e.Addr) {
			continue
		}
		if _, ok := l.o.Seats.Peek(e.URL); ok {
			return true
		}
		tried[e.URL] = true
		if asked++; asked >= 16 {
			break
		}
	}
	return false
}

// Sweep lets go of this member's visitors who waited queue.maxWait or for
// whom no server that would take them is up; the leader also lets go of
// the tickets whose socket did not come in time, of those whose member is
// gone, and of seats never taken.
func (l *Line) Sweep() {
	now := l.o.Now()
	var members map[string]bool
	lead := l.leads()
	if l.o.Members != nil {
		members = l.o.Members()
		l.mu.Lock()
		if !maps.Equal(members, l.alive) {
			l.alive = members
			l.renumberLocked()
		}
		l.mu.Unlock()
	}
	type letGo struct {
		ticket string
		why    Reason
		w      *Waiter
	}
	var gone []letGo
	l.mu.Lock()
	waitable := map[string]bool{}
	for ticket, w := range l.local {
		if w.done {
			continue
		}
		why := Reason(255)
		if now.Sub(w.issued) >= l.o.MaxWait {
			why = GaveUp
		} else {
			ok, seen := waitable[w.Visitor.URL]
			if !seen {
				ok = l.o.Seats.Waitable(w.Visitor.URL)
				waitable[w.Visitor.URL] = ok
			}
			if !ok {
				why = NoServer
			}
		}
		if why != 255 {
			w.done = true
			gone = append(gone, letGo{ticket, why, w})
		}
	}
	if lead {
		for ticket, e := range l.entries {
			if _, mine := l.local[ticket]; mine {
				continue
			}
			switch {
			case e.Owner == "" && now.Sub(e.seen) >= TicketTTL:
				gone = append(gone, letGo{ticket, Lapsed, nil})
			case e.Owner != "" && members != nil && !members[e.Owner]:
				gone = append(gone, letGo{ticket, Lost, nil})
			case e.Seat != "" && now.Sub(e.seatedAt) >= seatTTL:
				gone = append(gone, letGo{ticket, Lost, nil})
			}
		}
	}
	l.mu.Unlock()
	for _, g := range gone {
		if g.w != nil {
			g.w.out <- g.why
		}
		l.let(g.ticket, g.why)
	}
}

// Run passes over the line every tick (a seat freed is found within one)
// and sweeps it every second, until stop is closed.
func (l *Line) Run(stop <-chan struct{}, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		force := false
		if time.Since(last) >= time.Second {
			l.Sweep()
			last, force = time.Now(), true
		}
		l.Pass(force)
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

// insertLocked puts e in order by Seq; l.mu is held.
func (l *Line) insertLocked(e *entry) {
	i, _ := slices.BinarySearchFunc(l.order, e.Seq, func(x *entry, seq uint64) int {
		switch {
		case x.Seq < seq:
			return -1
		case x.Seq > seq:
			return 1
		}
		return 0
	})
	l.order = slices.Insert(l.order, i, e)
	l.n.Store(int64(len(l.order)))
}

// unlinkLocked takes e out of order; l.mu is held.
func (l *Line) unlinkLocked(e *entry) {
	if i := slices.Index(l.order, e); i >= 0 {
		l.order = slices.Delete(l.order, i, i+1)
	}
	l.n.Store(int64(len(l.order)))
}

// renumberLocked gives every local waiter its place and tells those whose
// place moved; an entry whose member is gone holds none. l.mu is held.
func (l *Line) renumberLocked() {
	place := 0
	for _, e := range l.order {
		if l.alive != nil && e.Owner != "" && !l.alive[e.Owner] {
			continue
		}
		place++
		w := l.local[e.Ticket]
		if w == nil || w.place == place {
			continue
		}
		w.place = place
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
}

// ErrUnknown is a store's answer for a ticket it does not hold.
var ErrUnknown = errors.New("unknown ticket")
