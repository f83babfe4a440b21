package alloc

import (
	"testing"
	"time"
)

// TestVisitorHolds: PROTOCOL §1's honest bookings. A visitor's repeat gets
// its unconfirmed booking again and books nothing; once the session count
// shows the session (or the booking lapses, the visitor never came), or the
// server leaves the placeable state, the next request books anew.
func TestVisitorHolds(t *testing.T) {
	now := t0
	r := New(Options{Servers: []string{"a/1", "b/1"}, Threshold: 95, Seed: 1, Now: func() time.Time { return now }})
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
	if other, _ := r.Place(Visitor{Addr: v.Addr, URL: "https://github.com/x/z/blob/main/worlds/w.wbt"}); other == first {
		t.Errorf("another world from the same address went to %s beside the booking", other)
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
		OnBook: func(s string) { told = append(told, s) }})
	for _, s := range []string{"a/1", "b/1"} {
		rep := report(s, 10)
		rep.Sessions, rep.At = 0, now
		if err := r.Apply(rep); err != nil {
			t.Fatal(err)
		}
	}
	if r.Booked("nowhere/1", 1) {
		t.Error("a booking for an unknown server was applied")
	}
	if !r.Booked("a/1", 3) {
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
