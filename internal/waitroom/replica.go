package waitroom

// This member's replica of the line: what the store tells it, in order,
// and the places of the waiters whose sockets it holds.

import "slices"

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
