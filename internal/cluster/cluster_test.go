package cluster

import (
	"net"
	"testing"

	"github.com/simgate/simgate/internal/schema"
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
// the election says so, asked afresh each time.
func TestLeadFences(t *testing.T) {
	var nilLead *Lead
	leads := true
	for _, tc := range []struct {
		name string
		lead *Lead
		flip bool
		want []bool
	}{
		{"alone", NewLead(nil), false, []bool{true, true}},
		{"no lead at all", nilLead, false, []bool{true}},
		{"a member that loses the lead", NewLead(func() bool { return leads }), true, []bool{true, false}},
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
