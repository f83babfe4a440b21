package alloc

import (
	"testing"
	"time"
)

// TestVisitorHolds: PROTOCOL §1's honest bookings, for an address at its
// cap (1 here). Its repeat gets its unconfirmed booking again and books
// nothing; once the session count shows the session (or the booking lapses,
// the visitor never came), or the server leaves the placeable state, the
// next request books anew.
func TestVisitorHolds(t *testing.T) {
	now := t0
	r := New(Options{Servers: []string{"a/1", "b/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now },
		MaxBookingsPerAddress: 1})
	apply := func(server string, load float64, sessions int) {
		t.Helper()
		rep := report(server, load)
		rep.Sessions, rep.At = sessions, now
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	apply("a/1", 10, 0)
	apply("b/1", 10, 0)
	v := Visitor{Addr: "198.51.100.7", URL: "https://github.com/x/y/blob/main/worlds/w.wbt"}
	first, _ := r.Place(v)
	for range 10 {
		if again, _ := r.Place(v); again != first {
			t.Fatalf("repeat got %s, want %s", again, first)
		}
	}
	if h, _ := r.Counts(); h != 1 || r.Repeated() != 10 {
		t.Fatalf("handed out %d, repeated %d; want 1 and 10", h, r.Repeated())
	}
	// At its cap, the address's other world is answered from its booking
	// too (no server here has a policy against it).
	if other, _ := r.Place(Visitor{Addr: v.Addr, URL: "https://github.com/x/z/blob/main/worlds/w.wbt"}); other != first {
		t.Errorf("another world from the same address at its cap went to %s, want its booking %s", other, first)
	}
	if peer, _ := r.Place(Visitor{Addr: "198.51.100.8"}); peer == "" {
		t.Error("another visitor got nothing")
	}

	// The session count shows the visitor's session: confirmed, so a new
	// request is a new visitor behind the same address (a classroom).
	now = now.Add(500 * time.Millisecond)
	apply(first, 11, 2)
	if h0, _ := r.Counts(); true {
		r.Place(v)
		if h, _ := r.Counts(); h != h0+1 {
			t.Errorf("after confirmation: handed out %d, want %d", h, h0+1)
		}
	}

	// A booking whose visitor never came lapses with the count's settle time.
	v2 := Visitor{Addr: "203.0.113.9"}
	got, _ := r.Place(v2)
	now = now.Add(4 * time.Second)
	apply("a/1", 10, 2)
	apply("b/1", 10, 2)
	h0, _ := r.Counts()
	if again, _ := r.Place(v2); again == "" {
		t.Fatal("no server")
	}
	if h, _ := r.Counts(); h != h0+1 {
		t.Errorf("a lapsed booking on %s was repeated (handed out %d, want %d)", got, h, h0+1)
	}

	// A held server that goes full is not repeated.
	v3 := Visitor{Addr: "203.0.113.10"}
	held, _ := r.Place(v3)
	apply(held, 99, 2)
	if again, _ := r.Place(v3); again == held {
		t.Errorf("repeated %s, which is full", held)
	}
}

// TestBookedElsewhere: a booking another member of the cluster made counts
// here as one of ours would for placement (the next session goes to the
// other server), but not as a placement of this coordinator's; and Place
// tells OnBook of each booking, not of a repeat.
func TestBookedElsewhere(t *testing.T) {
	now := t0
	var told []string
	r := New(Options{Servers: []string{"a/1", "b/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now },
		OnBook: func(s string) { told = append(told, s) }, MaxBookingsPerAddress: 1})
	for _, s := range []string{"a/1", "b/1"} {
		rep := report(s, 10)
		rep.Sessions, rep.At = 0, now
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	if r.Booked("nowhere/1", 1, now) {
		t.Error("a booking for an unknown server was applied")
	}
	if !r.Booked("a/1", 3, now) {
		t.Fatal("the bookings for a/1 were not applied")
	}
	for range 3 {
		if got, _ := r.Place(Visitor{}); got != "b/1" {
			t.Errorf("placed on %s with three sessions booked elsewhere on a/1", got)
		}
	}
	if h, _ := r.Counts(); h != 3 {
		t.Errorf("handed out %d, want 3 (the other member's are not ours)", h)
	}
	v := Visitor{Addr: "198.51.100.7"}
	r.Place(v)
	r.Place(v)
	if len(told) != 4 {
		t.Errorf("OnBook told of %d bookings, want 4 (a repeat books nothing): %v", len(told), told)
	}
}

// TestOperatorDrain: an operator's drain holds a server out of placement
// whatever its agent reports, says who, and is lifted by undrain; a down
// server drained stays down and comes back drained.
func TestOperatorDrain(t *testing.T) {
	now := t0
	var changes []Change
	r := New(Options{Servers: []string{"a/1", "b/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now },
		OnChange: func(c Change) { changes = append(changes, c) }})
	apply := func(server string, load float64) {
		t.Helper()
		rep := report(server, load)
		rep.At = now
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	apply("a/1", 10)
	apply("b/1", 50)
	if !r.SetDrained("a/1", "alice") || r.SetDrained("nowhere/1", "alice") {
		t.Fatal("SetDrained: known server refused, or unknown one accepted")
	}
	last := changes[len(changes)-1]
	if last.To != Draining || last.Reason != "drained by alice" {
		t.Errorf("change %+v", last)
	}
	apply("a/1", 5) // its agent reports up: still drained
	for range 3 {
		if got, _ := r.Place(Visitor{}); got != "b/1" {
			t.Errorf("placed on %s while a/1 is drained", got)
		}
	}
	if v := r.Snapshot()[0]; v.State != Draining || v.DrainedBy != "alice" || v.Reason != "drained by alice" {
		t.Errorf("view %+v", v)
	}
	r.SetDrained("a/1", "")
	if v := r.Snapshot()[0]; v.State != Up || v.DrainedBy != "" {
		t.Errorf("after undrain: %+v", v)
	}
	// Down, drained, back: drained.
	r.ConnectionLost("b/1")
	r.SetDrained("b/1", "bob")
	if v := r.Snapshot()[1]; v.State != Down {
		t.Errorf("a down server drained is %v", v.State)
	}
	apply("b/1", 20)
	if v := r.Snapshot()[1]; v.State != Draining || v.Reason != "drained by bob" {
		t.Errorf("back after a drain while down: %+v", v)
	}
}

// TestClassroomSpreads: 30 students behind one school address ask for the
// same world within a second on 10 equal servers: each books (a class is
// spread like 30 visitors), at most 5 on any server, none refused.
func TestClassroomSpreads(t *testing.T) {
	now := t0
	var servers []string
	for i := range 10 {
		servers = append(servers, string(rune('a'+i))+"/1")
	}
	r := New(Options{Servers: servers, Threshold: 95, Seed: 1, Now: func() time.Time { return now }})
	for _, s := range servers {
		rep := report(s, 10)
		rep.Sessions, rep.MaxSessions = 0, 20
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	per := map[string]int{}
	v := Visitor{Addr: "192.0.2.50", URL: "https://github.com/cyberbotics/webots/blob/R2025a/projects/robots/w.wbt"}
	for range 30 {
		now = now.Add(30 * time.Millisecond)
		got, ok := r.Place(v)
		if !ok {
			t.Fatal("a student was refused")
		}
		per[got]++
	}
	for s, n := range per {
		if n > 5 {
			t.Errorf("%d students on %s (spread %v), want at most 5", n, s, per)
		}
	}
}

// TestAddressShareBounded: one address asking without end holds at most
// BookingShare of the farm's free room (and the configured cap); another
// visitor is still placed.
func TestAddressShareBounded(t *testing.T) {
	now := t0
	r := New(Options{Servers: []string{"a/1", "b/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now },
		MaxBookingsPerAddress: 1000})
	for _, s := range []string{"a/1", "b/1"} {
		rep := report(s, 55)
		rep.Sessions, rep.MaxSessions = 0, 10 // 10 % a session: 4 sessions of room each, 8 in all
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	for range 1000 {
		r.Place(Visitor{Addr: "203.0.113.66"})
	}
	if h, _ := r.Counts(); h > 4 {
		t.Errorf("one address booked %d sessions of a farm with room for 8, want at most half", h)
	}
	if _, ok := r.Place(Visitor{Addr: "198.51.100.1"}); !ok {
		t.Error("another visitor was refused")
	}
}

// TestHeldBookingFollowsTheFarm: a held booking is repeated only while its
// server would take the visitor now; one whose server went over its
// shareIdleTime for the visitor's world, or blocks it, is placed afresh.
func TestHeldBookingFollowsTheFarm(t *testing.T) {
	now := t0
	r := New(Options{Servers: []string{"a/1", "b/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now },
		MaxBookingsPerAddress: 1})
	world := "https://github.com/someone/robots/blob/main/worlds/w.wbt"
	apply := func(server string, load float64, sh *Sharing) {
		t.Helper()
		rep := report(server, load)
		rep.Sessions, rep.MaxSessions, rep.Sharing, rep.At = 0, 100, sh, now
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	shares := &Sharing{Docker: true, ShareIdle: 50}
	apply("a/1", 10, shares)
	apply("b/1", 30, shares)
	v := Visitor{Addr: "192.0.2.9", URL: world}
	if got, _ := r.Place(v); got != "a/1" {
		t.Fatalf("first placement on %s, want a/1 (most idle room)", got)
	}
	// a/1 goes over its shareIdleTime: the repeat is placed afresh, on b/1.
	apply("a/1", 60, shares)
	if got, _ := r.Place(v); got != "b/1" {
		t.Errorf("repeat with a/1 over its shareIdleTime went to %s, want b/1", got)
	}
	// b/1 now blocks the world: afresh again, and a/1 is over its share:
	// no server, said by the refusal.
	apply("b/1", 30, &Sharing{Docker: true, ShareIdle: 50, Blocked: []string{"https://github.com/someone/"}})
	if got, ok := r.Place(v); ok {
		t.Errorf("repeat on a server that blocks the world: %s", got)
	}
}

// TestPolledBookingLapsesAtTheNextPoll: a polled server at 94 % takes one
// visitor (the booking puts it at the threshold), and the next visitor a
// poll period later: the booking lapses at the first poll that could show
// it, not after the 8 intervals a blind agent's would wait.
func TestPolledBookingLapsesAtTheNextPoll(t *testing.T) {
	now := t0
	r := New(Options{Servers: []string{"p/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now }})
	poll := func() {
		t.Helper()
		rep := Report{Server: "p/1", Status: StatusUp, Load: 94, Sessions: -1, Interval: 2 * time.Second, At: now, Polled: true}
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	poll()
	if _, ok := r.Place(Visitor{Addr: "192.0.2.1"}); !ok {
		t.Fatal("the first visitor was refused")
	}
	if _, ok := r.Place(Visitor{Addr: "192.0.2.2"}); ok {
		t.Fatal("a second visitor was placed beside a booking that puts the server at its threshold")
	}
	now = now.Add(500 * time.Millisecond)
	poll() // too soon after the booking to show it
	if _, ok := r.Place(Visitor{Addr: "192.0.2.2"}); ok {
		t.Fatal("the booking lapsed at a poll before its settling time")
	}
	now = now.Add(time.Second)
	poll() // half a period after the booking: lapsed
	if _, ok := r.Place(Visitor{Addr: "192.0.2.2"}); !ok {
		t.Error("the second visitor is still refused two polls after the first booking")
	}
}

// TestGatedUntilOpen: a gated registry answers as a busy farm (no
// placement, not available, HEAD's peek empty) until Open.
func TestGatedUntilOpen(t *testing.T) {
	r := New(Options{Servers: []string{"a/1", "b/1"}, Threshold: 95, Seed: 1, Gated: true})
	if err := r.Apply(report("a/1", 10)); err != nil {
		t.Fatal(err)
	}
	if got := r.Unheard(); len(got) != 1 || got[0] != "b/1" {
		t.Errorf("unheard %v, want [b/1]", got)
	}
	ch := r.AvailabilityChanged()
	if _, ok := r.Place(Visitor{}); ok || r.Available() {
		t.Fatal("a gated registry placed, or said it is available")
	}
	if _, ok := r.Peek(""); ok {
		t.Error("a gated registry's peek named a server")
	}
	r.Open()
	select {
	case <-ch:
	default:
		t.Error("opening did not flip availability")
	}
	if got, ok := r.Place(Visitor{}); !ok || got != "a/1" || !r.Available() {
		t.Errorf("after Open: %q %v", got, ok)
	}
}

// TestGraceAndStaleBookings: Grace gives every watched server one more
// timeout (a stalled coordinator judges no one silent for its own stall);
// another member's bookings older than a booking's lapse are not applied.
func TestGraceAndStaleBookings(t *testing.T) {
	now := t0
	r := New(Options{Servers: []string{"a/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now }})
	rep := report("a/1", 10)
	rep.Sessions, rep.At = 0, now
	if err := r.Apply(rep); err != nil {
		t.Fatal(err)
	}
	// 95 s later, nothing read meanwhile: without grace, a/1 is down.
	now = now.Add(95 * time.Second)
	r.Grace(now)
	r.Sweep(now.Add(time.Second))
	if v := r.Snapshot()[0]; v.State != Up {
		t.Errorf("after a stall and its grace: %v", v.State)
	}
	r.Sweep(now.Add(4 * time.Second))
	if v := r.Snapshot()[0]; v.State != Down {
		t.Errorf("one timeout after the grace, still silent: %v, want down", v.State)
	}
	rep.At = now
	if err := r.Apply(rep); err != nil {
		t.Fatal(err)
	}
	if r.Booked("a/1", 5, now.Add(-10*time.Second)) {
		t.Error("bookings 10 s old (past a 3 s lapse) were applied")
	}
	if r.Booked("a/1", 5, now.Add(time.Minute)) {
		t.Error("bookings from a minute in the future were applied")
	}
	if !r.Booked("a/1", 1, now.Add(-time.Second)) {
		t.Error("a booking 1 s old was not applied")
	}
}

// TestGraceServers: the servers whose agents were on a cluster member that
// is gone get one more timeout from then; the others are judged as ever.
func TestGraceServers(t *testing.T) {
	now := t0
	r := New(Options{Servers: []string{"a/1", "b/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now }})
	for _, s := range []string{"a/1", "b/1"} {
		rep := report(s, 10)
		rep.Sessions, rep.At = 0, now
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	// 2 s later a/1's agent's member is gone; the 3 s timeouts pass.
	r.GraceServers([]string{"a/1", "unknown/1"}, now.Add(2*time.Second))
	states := func() map[string]State {
		m := map[string]State{}
		for _, v := range r.Snapshot() {
			m[v.Server] = v.State
		}
		return m
	}
	r.Sweep(now.Add(4 * time.Second))
	if got := states(); got["a/1"] != Up || got["b/1"] != Down {
		t.Errorf("4 s after the last heartbeats: %v, want a/1 up (graced), b/1 down", got)
	}
	r.Sweep(now.Add(5100 * time.Millisecond))
	if got := states(); got["a/1"] != Down {
		t.Errorf("one timeout after the grace, still silent: %v, want a/1 down", got)
	}
}

// TestGraceSurvivesAChange: a change of state (a drain applied) does not
// take back a grace (issue 30: a member back from a cut applied the
// cluster's drains and judged both servers silent 50 ms later).
func TestGraceSurvivesAChange(t *testing.T) {
	now := t0
	r := New(Options{Servers: []string{"a/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now }})
	rep := report("a/1", 10)
	rep.Sessions, rep.At = 0, now
	if err := r.Apply(rep); err != nil {
		t.Fatal(err)
	}
	now = now.Add(95 * time.Second)
	r.Grace(now)
	r.SetDrained("a/1", "admin")
	r.Sweep(now.Add(time.Second))
	if v := r.Snapshot()[0]; v.State == Down {
		t.Errorf("a drain applied within a grace: %v (%s)", v.State, v.Reason)
	}
	r.Sweep(now.Add(4 * time.Second))
	if v := r.Snapshot()[0]; v.State != Down {
		t.Errorf("one timeout after the grace, still silent: %v, want down", v.State)
	}
}
