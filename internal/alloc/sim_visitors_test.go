package alloc

import (
	"testing"
	"time"
)

// The honest-booking scenarios of PROTOCOL §1 in the placement simulator:
// one address hammering /session must not fill the farm for everyone else,
// and a classroom behind one address must still be spread over the farm.

// mixed merges a stream of arrivals by one visitor into a stream of new
// visitors, in time order.
func mixed(hammer simVisitor, hammerAt []time.Duration, others []time.Duration) ([]time.Duration, []simVisitor) {
	var at []time.Duration
	var who []simVisitor
	i, j := 0, 0
	for i < len(hammerAt) || j < len(others) {
		if j >= len(others) || (i < len(hammerAt) && hammerAt[i] <= others[j]) {
			at, who = append(at, hammerAt[i]), append(who, hammer)
			i++
			continue
		}
		at = append(at, others[j])
		who = append(who, simVisitor{Visitor: Visitor{Addr: "visitor-" + others[j].String()}, comes: true})
		j++
	}
	return at, who
}

// anonymousPolicy is simgate without honest bookings: every request books.
type anonymousPolicy struct{ *simgatePolicy }

func (p anonymousPolicy) place(now time.Duration, _ Visitor) (int, bool) {
	return p.simgatePolicy.place(now, Visitor{})
}

func TestHonestBookingsInTheSimulator(t *testing.T) {
	t.Run("one address hammering", func(t *testing.T) {
		// A 2-server farm at about 20 %; a script asks 20 times a second for
		// 7 s (140 requests, never opening a session) while real visitors
		// come every 500 ms.
		hammer := simVisitor{Visitor: Visitor{Addr: "203.0.113.66", URL: "https://github.com/x/y/blob/main/worlds/w.wbt"}}
		at, who := mixed(hammer, every(10*time.Second, 17*time.Second, 50*time.Millisecond), every(10*time.Second+25*time.Millisecond, 20*time.Second, 500*time.Millisecond))
		sc := simScenario{name: "hammer", servers: []simServer{{name: "a/2000", base: 18, perSession: 5}, {name: "b/2000", base: 20, perSession: 5}},
			arrivals: at, visitors: who, duration: between(60*time.Second, 90*time.Second), end: 25 * time.Second}
		ours := simulate(sc, func(c *time.Time) policy { return newSimgatePolicy(sc, c) })
		without := simulate(sc, func(c *time.Time) policy { return anonymousPolicy{newSimgatePolicy(sc, c)} })
		others := func(r simResult) int { return r.refused - r.refusedBy[hammer.Addr] }
		t.Logf("140 requests from one address among %d visitors: visitors refused: simgate %d, without honest bookings %d",
			len(at)-140, others(ours), others(without))
		if others(ours) != 0 {
			t.Errorf("simgate refused %d real visitors while one address hammered", others(ours))
		}
		if others(without) == 0 {
			t.Error("the scenario does not hurt a farm that books every request: it proves nothing")
		}
	})

	t.Run("classroom behind one address", func(t *testing.T) {
		// 30 pupils behind the school's one address open the same world
		// over a minute; each opens the session it is given. Ten servers.
		class := simVisitor{Visitor: Visitor{Addr: "198.51.100.1", URL: "https://github.com/x/y/blob/main/worlds/lesson.wbt"}, comes: true}
		at := every(5*time.Second, 65*time.Second, 2*time.Second)
		who := make([]simVisitor, len(at))
		for i := range who {
			who[i] = class
		}
		sc := simScenario{name: "classroom", servers: servers(2, 3, 4, 5, 2, 3, 4, 5, 6, 8),
			arrivals: at, visitors: who, duration: between(20*time.Minute, 40*time.Minute), end: 90 * time.Second}
		ours := simulate(sc, func(c *time.Time) policy { return newSimgatePolicy(sc, c) })
		most, used := 0, 0
		for _, n := range ours.started {
			most = max(most, n)
			if n > 0 {
				used++
			}
		}
		t.Logf("classroom of %d: sessions per server %v (most %d on one, %d servers used), refused %d",
			len(at), ours.started, most, used, ours.refused)
		if fair := (len(at) + len(sc.servers) - 1) / len(sc.servers); most > fair+3 || ours.refused > 0 {
			t.Errorf("the classroom was not spread: %v, refused %d (fair share %d)", ours.started, ours.refused, fair)
		}
	})

	t.Run("classroom within 10 s", func(t *testing.T) {
		// The teaching case at its sharpest: 30 students behind one address
		// open the same world within 10 s, before any session count shows
		// one of them. Each is its own booking (an address holds up to 40),
		// so they are spread like 30 visitors. Ten equal servers.
		class := simVisitor{Visitor: Visitor{Addr: "198.51.100.2", URL: "https://github.com/x/y/blob/main/worlds/lesson.wbt"}, comes: true}
		at := every(5*time.Second, 15*time.Second-time.Millisecond, 10*time.Second/30)
		who := make([]simVisitor, len(at))
		for i := range who {
			who[i] = class
		}
		sc := simScenario{name: "classroom-10s", servers: servers(3, 3, 3, 3, 3, 3, 3, 3, 3, 3),
			arrivals: at, visitors: who, duration: between(20*time.Minute, 40*time.Minute), end: 60 * time.Second}
		ours := simulate(sc, func(c *time.Time) policy { return newSimgatePolicy(sc, c) })
		most := 0
		for _, n := range ours.started {
			most = max(most, n)
		}
		t.Logf("classroom of %d within 10 s: sessions per server %v (most %d on one), refused %d", len(at), ours.started, most, ours.refused)
		if most > 5 || ours.refused > 0 {
			t.Errorf("the classroom was not spread: %v, refused %d; want at most 5 on a server, none refused", ours.started, ours.refused)
		}
	})
}
