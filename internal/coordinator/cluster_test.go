package coordinator

import (
	"net"
	"testing"

	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/config"
)

// TestClusterSize: a member counts the distinct routes, its own listed
// address once, so that every member may share one list; three members
// keep three copies of the state.
func TestClusterSize(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 16222}
	for _, tc := range []struct {
		name    string
		cl      *config.Cluster
		members int
	}{
		{"alone", nil, 1},
		{"own address listed", &config.Cluster{Listen: "127.0.0.1:16222", Routes: []string{
			"nats-route://127.0.0.1:16222", "nats-route://127.0.0.1:16223", "nats-route://127.0.0.1:16224"}}, 3},
		{"own address by name", &config.Cluster{Listen: "0.0.0.0:16222", Routes: []string{
			"nats-route://localhost:16222", "nats-route://127.0.0.1:16223", "nats-route://127.0.0.1:16224"}}, 3},
		{"own address not listed", &config.Cluster{Listen: "127.0.0.1:16222", Routes: []string{
			"nats-route://127.0.0.1:16223", "nats-route://127.0.0.1:16224"}}, 3},
		{"a route twice", &config.Cluster{Listen: "127.0.0.1:16222", Routes: []string{
			"nats-route://127.0.0.1:16223", "nats-route://127.0.0.1:16223"}}, 2},
		{"port 0 is the bound one", &config.Cluster{Listen: "127.0.0.1:0", Routes: []string{
			"nats-route://127.0.0.1:16222", "nats-route://127.0.0.1:16223"}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clusterSize(tc.cl, bound); got != tc.members {
				t.Errorf("%d members, want %d", got, tc.members)
			}
		})
	}
	for members, want := range map[int]int{1: 1, 2: 1, 3: 3, 5: 3} {
		if got := replicas(members); got != want {
			t.Errorf("%d members: %d replicas, want %d", members, got, want)
		}
	}
}

// BenchmarkPlaced is what telling the cluster of a placement costs
// /session: go test -bench Placed -benchmem ./internal/coordinator
func BenchmarkPlaced(b *testing.B) {
	bk := &bookings{subj: bus.Subjects{Prefix: "simgate"}, clustered: true, pending: map[string]int{},
		interest: func(string) bool { return false }}
	servers := []string{"a.test/1", "b.test/1", "c.test/1", "d.test/1"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		bk.placed(servers[i%len(servers)])
		i++
	}
}
