// Package waitroom is the line of visitors who wait for a seat when no
// server would take them now (PROTOCOL §1.2): tickets, places, first come
// first served, and the estimate of a wait. It knows the registry through
// the small Seats interface and nothing of HTTP, WebSocket or NATS: the
// HTTP API holds each waiter's socket, tells it its place, and relays its
// session once the line seats it.
package waitroom

import (
	"crypto/rand"
	"encoding/hex"
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
	// Waitable reports whether a server that would take url is up.
	Waitable(url string) bool
	// Generation moves whenever room may have freed.
	Generation() uint64
	// EndRate is how many sessions per second end on the servers that
	// would take url, once known.
	EndRate(url string) (float64, bool)
}

// TicketTTL is how long a ticket waits for its socket (PROTOCOL §1.2).
const TicketTTL = 10 * time.Second

// Reason says why a visitor left the line without a seat.
type Reason uint8

// Reasons a visitor leaves the line unseated.
const (
	Closed   Reason = iota // it closed its socket
	GaveUp                 // it waited queue.maxWait
	NoServer               // no server that would take it is up any more
	Lapsed                 // its ticket's socket was not opened in time
	Failed                 // the seats given to it could not be reached
)

var reasonNames = [...]string{"closed", "max-wait", "no-server", "lapsed", "unreachable"}

func (r Reason) String() string { return reasonNames[r] }

// Options configures a Line.
type Options struct {
	Seats Seats
	// Max is how many visitors may wait (tickets not opened yet included);
	// PerAddress how many tickets one client address may hold.
	Max, PerAddress int
	// MaxWait is how long a visitor waits before it is told to try later.
	MaxWait time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Seated, when set, is told of every seat given from the line with
	// how long its visitor waited; Left of every visitor that left
	// unseated, with why and how long it waited. Both are called under
	// the line's lock: they must not call back into it.
	Seated func(wait time.Duration)
	Left   func(why Reason, wait time.Duration)
}

// Waiter is one visitor in line, from its ticket to its seat.
type Waiter struct {
	Ticket  string
	Visitor alloc.Visitor
	issued  time.Time
	opened  bool // its socket came: the ticket is used
	started bool // its start message came: it can be seated
	inLine  bool
	tries   int // seats given to it that could not be reached
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

// Issued is when w was given its ticket: its wait counts from then.
func (w *Waiter) Issued() time.Time { return w.issued }

// Line is the waiting room's line: first come, first served among the
// visitors a freed seat would take.
type Line struct {
	o Options
	// mu guards everything below but n; the line calls the registry under
	// it (Line.mu → alloc.Registry.mu, LOCKS.md), never the other way.
	mu      sync.Mutex
	order   []*Waiter // by ticket, oldest first
	tickets map[string]*Waiter
	perAddr map[string]int
	// gen is the registry's generation at the last pass; dirty: a waiter
	// started or left since. Atomics, so that a pass with nothing to do
	// takes no lock (/session asks for one while visitors wait).
	gen   atomic.Uint64
	dirty atomic.Bool
	n     atomic.Int64
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
	return &Line{o: o, tickets: map[string]*Waiter{}, perAddr: map[string]int{}}
}

// Len is how many visitors wait (tickets not opened yet included). It
// takes no lock: /session asks it on every request.
func (l *Line) Len() int { return int(l.n.Load()) }

// Issue gives v a ticket and a place at the end of the line; ok is false
// when the line is full or v's address holds its tickets.
func (l *Line) Issue(v alloc.Visitor) (ticket string, ok bool) {
	var b [16]byte // 128 random bits: unguessable
	_, _ = rand.Read(b[:])
	ticket = hex.EncodeToString(b[:])
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) >= l.o.Max || l.perAddr[v.Addr] >= l.o.PerAddress {
		return "", false
	}
	w := &Waiter{Ticket: ticket, Visitor: v, issued: l.o.Now(), inLine: true,
		changed: make(chan struct{}, 1), seat: make(chan string, 1), out: make(chan Reason, 1)}
	l.order = append(l.order, w)
	w.place = len(l.order)
	l.tickets[ticket] = w
	l.perAddr[v.Addr]++
	l.n.Store(int64(len(l.order)))
	return ticket, true
}

// Open takes ticket's place in line for the socket that brings it: once.
// A ticket unknown, lapsed or already used opens nothing.
func (l *Line) Open(ticket string) (*Waiter, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.tickets[ticket]
	if w == nil || w.opened || !w.inLine {
		return nil, false
	}
	w.opened = true
	return w, true
}

// Start marks w ready to be seated (its start message came) and looks
// for a seat for it at once.
func (l *Line) Start(w *Waiter) {
	l.mu.Lock()
	w.started = true
	l.dirty.Store(true)
	l.mu.Unlock()
	l.Pass(false)
}

// Leave takes w out of the line (its visitor closed the socket); the ones
// behind it move up.
func (l *Line) Leave(w *Waiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.inLine {
		l.removeLocked(w, Closed)
		l.renumberLocked()
		l.dirty.Store(true)
	}
}

// Requeue puts w back at its place after the seat given to it could not be
// reached (its booking lapses as any unconfirmed one); false when it has
// failed too often or no longer fits, and it leaves the line.
func (l *Line) Requeue(w *Waiter) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	w.tries++
	if w.tries >= 3 || len(l.order) >= l.o.Max {
		if l.o.Left != nil {
			l.o.Left(Failed, l.o.Now().Sub(w.issued))
		}
		return false
	}
	i := 0
	for i < len(l.order) && !l.order[i].issued.After(w.issued) {
		i++
	}
	l.order = append(l.order, nil)
	copy(l.order[i+1:], l.order[i:])
	l.order[i] = w
	w.inLine = true
	l.tickets[w.Ticket] = w
	l.perAddr[w.Visitor.Addr]++
	l.n.Store(int64(len(l.order)))
	l.renumberLocked()
	return true
}

// Pass seats the visitors a seat has freed for, in the order they came:
// each started waiter, oldest first, is offered to the registry; a world
// that found no room, or an address at its cap, is not asked again in
// the same pass. Nothing is done unless the registry's generation moved
// or a waiter came or went since the last pass (force: look anyway).
func (l *Line) Pass(force bool) {
	gen := l.o.Seats.Generation()
	if !force && !l.dirty.Load() && gen == l.gen.Load() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) == 0 {
		return
	}
	l.gen.Store(gen)
	l.dirty.Store(false)
	var noRoom, capped map[string]bool
	seated := false
	kept := l.order[:0]
	for _, w := range l.order {
		if !w.started || noRoom[w.Visitor.URL] || capped[w.Visitor.Addr] {
			kept = append(kept, w)
			continue
		}
		server, out := l.o.Seats.Admit(w.Visitor, true)
		switch out {
		case alloc.Placed:
			l.forgetLocked(w)
			w.seat <- server
			if l.o.Seated != nil {
				l.o.Seated(l.o.Now().Sub(w.issued))
			}
			seated = true
			continue
		case alloc.AtCap:
			if capped == nil {
				capped = map[string]bool{}
			}
			capped[w.Visitor.Addr] = true
		default:
			if noRoom == nil {
				noRoom = map[string]bool{}
			}
			noRoom[w.Visitor.URL] = true
		}
		kept = append(kept, w)
	}
	clear(l.order[len(kept):])
	l.order = kept
	if seated {
		l.n.Store(int64(len(l.order)))
		l.renumberLocked()
	}
}

// Sweep lets go of the tickets whose socket did not come in time, of the
// visitors who waited queue.maxWait, and of those no server that would
// take them is up for any more.
func (l *Line) Sweep() {
	now := l.o.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) == 0 {
		return
	}
	waitable := map[string]bool{}
	var gone []*Waiter
	var why []Reason
	for _, w := range l.order {
		r := Reason(255)
		switch {
		case !w.opened && now.Sub(w.issued) >= TicketTTL:
			r = Lapsed
		case now.Sub(w.issued) >= l.o.MaxWait:
			r = GaveUp
		default:
			ok, seen := waitable[w.Visitor.URL]
			if !seen {
				ok = l.o.Seats.Waitable(w.Visitor.URL)
				waitable[w.Visitor.URL] = ok
			}
			if !ok {
				r = NoServer
			}
		}
		if r != 255 {
			gone, why = append(gone, w), append(why, r)
		}
	}
	for i, w := range gone {
		l.removeLocked(w, why[i])
	}
	if len(gone) > 0 {
		l.renumberLocked()
		l.dirty.Store(true)
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
	return len(l.order), l.o.Now().Sub(l.order[0].issued)
}

// removeLocked lets w go unseated, telling its socket why unless it left
// by itself; l.mu is held, and the places are renumbered by the caller.
func (l *Line) removeLocked(w *Waiter, why Reason) {
	if i := slices.Index(l.order, w); i >= 0 {
		l.order = slices.Delete(l.order, i, i+1)
	}
	l.forgetLocked(w)
	if why != Closed {
		select {
		case w.out <- why:
		default:
		}
	}
	if l.o.Left != nil {
		l.o.Left(why, l.o.Now().Sub(w.issued))
	}
}

// forgetLocked drops w's ticket and its count against its address; the
// caller takes it out of order. l.mu is held.
func (l *Line) forgetLocked(w *Waiter) {
	w.inLine = false
	delete(l.tickets, w.Ticket)
	if l.perAddr[w.Visitor.Addr]--; l.perAddr[w.Visitor.Addr] <= 0 {
		delete(l.perAddr, w.Visitor.Addr)
	}
	l.n.Store(int64(len(l.order)))
}

// renumberLocked gives every waiter its place and tells those whose place
// moved; l.mu is held.
func (l *Line) renumberLocked() {
	for i, w := range l.order {
		if w.place != i+1 {
			w.place = i + 1
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}
}
