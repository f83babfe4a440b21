package cluster

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/metrics"
	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/testutil"
)

// TestSize: a member counts the distinct routes, its own listed address
// once, so that every member may share one list; three members keep three
// copies of the state.
func TestSize(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 16222}
	for _, tc := range []struct {
		name    string
		listen  string
		routes  []string
		members int
	}{
		{"own address listed", "127.0.0.1:16222", []string{
			"nats-route://127.0.0.1:16222", "nats-route://127.0.0.1:16223", "nats-route://127.0.0.1:16224"}, 3},
		{"own address by name", "0.0.0.0:16222", []string{
			"nats-route://localhost:16222", "nats-route://127.0.0.1:16223", "nats-route://127.0.0.1:16224"}, 3},
		{"own address not listed", "127.0.0.1:16222", []string{
			"nats-route://127.0.0.1:16223", "nats-route://127.0.0.1:16224"}, 3},
		{"a route twice", "127.0.0.1:16222", []string{
			"nats-route://127.0.0.1:16223", "nats-route://127.0.0.1:16223"}, 2},
		{"port 0 is the bound one", "127.0.0.1:0", []string{
			"nats-route://127.0.0.1:16222", "nats-route://127.0.0.1:16223"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Size(tc.listen, tc.routes, bound); got != tc.members {
				t.Errorf("%d members, want %d", got, tc.members)
			}
		})
	}
	for members, want := range map[int]int{1: 1, 2: 1, 3: 3, 5: 3} {
		if got := Replicas(members); got != want {
			t.Errorf("%d members: %d replicas, want %d", members, got, want)
		}
	}
}

// TestLeadFences: a lone coordinator always leads; a member leads while
// the election says so, asked afresh each time, and only while it reaches
// a majority (the meta leader's title lingers on a cut-off member).
func TestLeadFences(t *testing.T) {
	var nilLead *Lead
	leads := true
	withMajority, cutOff := newQuorum(3, 3), newQuorum(3, 1)
	for _, tc := range []struct {
		name string
		lead *Lead
		flip bool
		want []bool
	}{
		{"alone", NewLead(nil, newQuorum(1, 1), nil), false, []bool{true, true}},
		{"no lead at all", nilLead, false, []bool{true}},
		{"a member that loses the lead", NewLead(func() bool { return leads }, withMajority, nil), true, []bool{true, false}},
		{"a leader cut off from the others", NewLead(func() bool { return leads }, cutOff, nil), false, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leads = true
			for i, want := range tc.want {
				if got := tc.lead.Holds(); got != want {
					t.Errorf("Holds #%d = %v, want %v", i, got, want)
				}
				if tc.flip {
					leads = !leads
				}
			}
		})
	}
}

// newQuorum is a quorum of configured members that reaches seen of them,
// checked twice (a loss counts on the second check).
func newQuorum(configured, seen int) *Quorum {
	q := NewQuorum(configured, func() int { return seen }, time.Now(), slog.New(slog.DiscardHandler),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "q"}))
	q.check(time.Now())
	q.check(time.Now())
	return q
}

// TestQuorumCurrent: a majority counts at once, its loss on the second
// check in a row; onLost once the cluster formed, onBack when it returns.
func TestQuorumCurrent(t *testing.T) {
	seen := 3
	q := NewQuorum(3, func() int { return seen }, time.Now(), slog.New(slog.DiscardHandler),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "q"}))
	var events []string
	q.OnChange(func() { events = append(events, "lost") }, func() { events = append(events, "back") })
	steps := []struct {
		seen    int
		current bool
	}{
		{3, true},
		{1, true}, // one check short: a stall's catching up
		{3, true},
		{1, true},
		{1, false}, // two in a row: lost
		{1, false},
		{2, true}, // a majority of 3: back
	}
	for i, st := range steps {
		seen = st.seen
		q.check(time.Now())
		if got := q.Current(); got != st.current {
			t.Errorf("step %d (%d seen): current %v, want %v", i, st.seen, got, st.current)
		}
	}
	if got := strings.Join(events, ","); got != "lost,back" {
		t.Errorf("events %q, want lost,back", got)
	}
}

// TestPeersHeardLately: a member counts the members it heard within
// PeerSilence, itself included, by the monotonic clock.
func TestPeersHeardLately(t *testing.T) {
	now := time.Now()
	p := &Peers{self: "a", heard: map[string]heard{
		"b": {at: now.Add(-PeerSilence / 2)}, "c": {at: now.Add(-PeerSilence - time.Millisecond)}}}
	if got := p.reachedAt(now); got != 2 {
		t.Errorf("reached %d, want 2 (itself and b)", got)
	}
}

// TestQuietMembers: issue 30. A member heard once and not for QuietAfter
// is quiet (its agents are about to move); one heard lately, or never,
// is not.
func TestQuietMembers(t *testing.T) {
	now := time.Now()
	p := &Peers{self: "a", heard: map[string]heard{
		"b": {at: now.Add(-QuietAfter - time.Millisecond)}, "c": {at: now.Add(-QuietAfter / 2)}}}
	got := p.quietAt(map[string]string{"IDB": "b", "IDC": "c", "IDD": "d"}, now)
	if len(got) != 1 || got[0] != "IDB" {
		t.Errorf("quiet %v, want [IDB]", got)
	}
}

// TestRivalFencesTheLead: issue 30. A member that holds the meta leader's
// title and a quorum does not lead while a member it hears claims the
// title too (its own title lingering after a pause); an old claim, or one
// from a member no longer heard, is no rival.
func TestRivalFencesTheLead(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name  string
		heard map[string]heard
		leads bool
	}{
		{"no other claim", map[string]heard{"b": {at: now}, "c": {at: now}}, true},
		{"a rival heard now", map[string]heard{"b": {at: now, leads: true}, "c": {at: now}}, false},
		{"a rival unheard", map[string]heard{"b": {at: now.Add(-2 * PeerSilence), leads: true}, "c": {at: now}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Peers{self: "a", heard: tc.heard}
			q := &Quorum{configured: 3}
			q.current.Store(true)
			l := NewLead(func() bool { return true }, q, func() bool { return p.rivalAt(now) })
			if got := l.Holds(); got != tc.leads {
				t.Errorf("leads %v, want %v", got, tc.leads)
			}
		})
	}
}

// BenchmarkPlaced is what telling the cluster of a placement costs
// /session: go test -bench Placed -benchmem ./internal/cluster
func BenchmarkPlaced(b *testing.B) {
	bk := &Bookings{subj: schema.Subjects{Prefix: "simgate"}, clustered: true, pending: map[string]int{},
		interest: func(string) bool { return false }}
	servers := []string{"127.0.0.1/3001", "127.0.0.1/3002", "127.0.0.1/3003", "127.0.0.1/3004"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bk.Placed(servers[i%len(servers)])
		i++
	}
}

// bookedAt records when the bookings it is told of were made.
type bookedAt struct {
	mu sync.Mutex
	at []time.Time
}

func (r *bookedAt) Booked(server string, n int, at time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, at)
	return true
}

func (r *bookedAt) Known(string) bool { return true }

// TestBookingsDatedOnTheReceiversClock: issue 30. A member whose clock is
// an hour off sends its bookings dated by its clock; the receiver dates
// them on its own, by how long they waited at the sender, so none is
// taken for stale.
func TestBookingsDatedOnTheReceiversClock(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Connect("member-b") // a coordinator's own: the members' subjects are theirs
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	subj := schema.Subjects{Prefix: "simgate"}
	reg := &bookedAt{}
	if _, err := NewBookings(BookingsOptions{Conn: nc, Subjects: subj, Self: "b", Registry: reg, Metrics: metrics.New(),
		Interest: func(string) bool { return false }, Clustered: true}); err != nil {
		t.Fatal(err)
	}
	stepped := time.Now().Add(time.Hour) // the sender's clock
	data, _ := json.Marshal(batch{Member: "a", At: stepped.UnixNano(), Held: int64(time.Millisecond), Servers: map[string]int{"s/1": 2}})
	if err := nc.Publish(subj.MemberBookings(), data); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		if len(reg.at) != 1 {
			return fmt.Errorf("%d batches applied", len(reg.at))
		}
		if age := time.Since(reg.at[0]); age < 0 || age > time.Minute {
			return fmt.Errorf("dated %v ago, want a moment", age)
		}
		return nil
	})
}
