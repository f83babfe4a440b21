package waitroom

// Seating: the leader's passes over the line, the sweeps that let
// visitors go, and first come, first served across the members.

import (
	"maps"
	"slices"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

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
