package alloc

// Visitors behind one address (PROTOCOL §1): nothing in a request tells a
// class of 30 behind a school's address from one visitor reloading 30
// times, so an address may hold several unconfirmed bookings at once, up to
// a cap sized for a large class and bounded by a share of the farm's free
// room. Past its cap, its requests are answered from the bookings it holds
// (round robin, each only while its server would take that visitor now)
// and book nothing more.

// DefaultMaxBookingsPerAddress is the cap of unconfirmed bookings one
// client address may hold (http.maxBookingsPerAddress): a large class.
const DefaultMaxBookingsPerAddress = 40

// BookingShare is the share of the farm's free room (its servers' room
// below the threshold, in sessions, counting the address's own bookings as
// room) one address may hold: an address asking at its full rate for as
// long as it likes leaves the other half to everyone else.
const BookingShare = 0.5

// maxHoldBytes bounds what the holds take in memory, URLs included; past
// it, resolved holds are forgotten first, then all.
const maxHoldBytes = 16 << 20

// holdOverhead is what one hold costs besides its URL (the struct, the
// slice and map slots), for the byte bound.
const holdOverhead = 64

// hold is one booking of an address: reservation seq on server s, asked
// with url.
type hold struct {
	s   *server
	seq uint64
	url string
}

// addrHolds is one address's unconfirmed bookings.
type addrHolds struct {
	list []hold
	next int    // where the round robin over list goes on
	gen  uint64 // the registry's generation when resolved holds were last dropped
}

// live reports whether h's booking still waits on a server that is up.
func (h *hold) live() bool {
	return h.s.state == Up && h.s.res.unconfirmed(h.seq, h.s.report)
}

// takes reports whether h's server would take a visitor with url now:
// up, below the threshold without this booking, and its sharing policy
// accepting url (PROTOCOL §1.1). r.mu is held.
func (r *Registry) takes(h *hold, url string) bool {
	s := h.s
	if s.state != Up || s.eff-s.res.perSession >= r.o.Threshold {
		return false
	}
	sh := s.report.Sharing
	if sh == nil || r.policies == 0 || !IsRepositoryURL(url) {
		return true
	}
	return dedicated(sh, url) || (shares(sh, url) && s.eff <= sh.ShareIdle)
}

// prune drops a's resolved holds; it returns the bytes freed. r.mu is held.
func (a *addrHolds) prune() int {
	freed := 0
	kept := a.list[:0]
	for _, h := range a.list {
		if h.live() {
			kept = append(kept, h)
		} else {
			freed += holdOverhead + len(h.url)
		}
	}
	clear(a.list[len(kept):])
	a.list = kept
	if a.next >= len(a.list) {
		a.next = 0
	}
	return freed
}

// capFor is how many unconfirmed bookings an address holding held may
// have: the configured cap, bounded by BookingShare of the farm's free room
// (counting held as room), at least 1. r.mu is held.
func (r *Registry) capFor(held int) int {
	return max(1, min(r.maxPerAddr(), int(BookingShare*(r.freeRoom()+float64(held)))))
}

// freeRoom is the farm's room below the threshold, in sessions. The scan of
// the servers up (O(n)) is redone only when a server's state or load moved,
// and at most once per Sweep (every 100 ms in the coordinator); the
// bookings made since are taken off it, one session each. r.mu is held.
func (r *Registry) freeRoom() float64 {
	if r.roomTick == 0 || (r.roomGen != r.gen && r.roomTick != r.ticks+1) {
		room := 0.0
		for _, s := range r.heap {
			if s.eff < r.o.Threshold {
				room += (r.o.Threshold - s.eff) / max(s.res.perSession, minPerSession)
			}
		}
		r.room, r.roomGen, r.roomTick, r.roomHanded = room, r.gen, r.ticks+1, r.handedOut
	}
	return max(0, r.room-float64(r.handedOut-r.roomHanded))
}

func (r *Registry) maxPerAddr() int {
	if r.o.MaxBookingsPerAddress > 0 {
		return r.o.MaxBookingsPerAddress
	}
	return DefaultMaxBookingsPerAddress
}

// held answers v from the bookings its address holds when it is at its
// cap: the server to repeat, with atCap. Not atCap: v is placed afresh.
// With wait, an address at its cap is only told so (its visitor waits in
// line for its bookings to confirm, PROTOCOL §1.2). r.mu is held.
func (r *Registry) held(v Visitor, wait bool) (s *server, atCap bool) {
	a := r.holds[v.Addr]
	if a == nil {
		return nil, false
	}
	// Confirmations come with reports: an address at its cap asking on
	// and on looks at its holds again only once something changed.
	if a.gen != r.gen {
		r.holdBytes -= a.prune()
		a.gen = r.gen
	}
	if len(a.list) == 0 {
		delete(r.holds, v.Addr)
		r.holdBytes -= holdOverhead + len(v.Addr)
		return nil, false
	}
	if len(a.list) < r.capFor(len(a.list)) {
		return nil, false
	}
	if wait {
		return nil, true
	}
	for range len(a.list) {
		h := &a.list[a.next]
		a.next = (a.next + 1) % len(a.list)
		if h.live() && r.takes(h, v.URL) {
			return h.s, true
		}
	}
	// None of its servers would take v now (full, over its shareIdleTime
	// for v's world, blocking it): those holds are dropped (their
	// reservations still count on the servers until they lapse) and v is
	// placed afresh.
	kept := a.list[:0]
	for _, h := range a.list {
		if h.live() && r.takes(&h, v.URL) {
			kept = append(kept, h)
		} else {
			r.holdBytes -= holdOverhead + len(h.url)
		}
	}
	clear(a.list[len(kept):])
	a.list, a.next = kept, 0
	return nil, false
}

// hold remembers v's booking seq on s. r.mu is held.
func (r *Registry) hold(s *server, seq uint64, v Visitor) {
	cost := holdOverhead + len(v.URL)
	a := r.holds[v.Addr]
	if a == nil {
		cost += holdOverhead + len(v.Addr)
	}
	if r.holdBytes+cost > maxHoldBytes {
		r.pruneHolds(true)
		if a = r.holds[v.Addr]; a == nil {
			cost = 2*holdOverhead + len(v.URL) + len(v.Addr)
		}
	}
	if a == nil {
		a = &addrHolds{}
		r.holds[v.Addr] = a
	}
	a.list = append(a.list, hold{s: s, seq: seq, url: v.URL})
	r.holdBytes += cost
}

// pruneHolds forgets the holds whose booking is resolved; all when full
// and still over the byte bound. r.mu is held.
func (r *Registry) pruneHolds(full bool) {
	for addr, a := range r.holds {
		r.holdBytes -= a.prune()
		if len(a.list) == 0 {
			delete(r.holds, addr)
			r.holdBytes -= holdOverhead + len(addr)
		}
	}
	if full && r.holdBytes > maxHoldBytes/2 {
		clear(r.holds)
		r.holdBytes = 0
	}
}

// Capped reports whether addr holds its cap of unconfirmed bookings now
// (a visitor of it would wait in line). It changes nothing.
func (r *Registry) Capped(addr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.holds[addr]
	if a == nil {
		return false
	}
	live := 0
	for i := range a.list {
		if a.list[i].live() {
			live++
		}
	}
	return live > 0 && live >= r.capFor(live)
}
