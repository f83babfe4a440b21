package bus

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/testutil"
)

// startMember starts one member of a cluster routed to the given members
// (none for the first), without JetStream.
func startMember(t *testing.T, routes ...*Server) *Server {
	t.Helper()
	var urls []string
	for _, r := range routes {
		urls = append(urls, r.ClusterURL())
	}
	srv, err := StartServer(ServerOptions{Listen: "127.0.0.1:0",
		Cluster: &ClusterOptions{Name: "t", Listen: "127.0.0.1:0", Routes: urls}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

func waitMembers(t *testing.T, n int, servers ...*Server) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		for _, s := range servers {
			if m := s.Members(); m != n {
				return fmt.Errorf("%s reaches %d members, want %d", s.Name(), m, n)
			}
		}
		return nil
	})
}

// TestIntakeInACluster: an agent's connection that closes on a live member
// marks its server lost on every member; a member that shuts down does
// not (its agents fail over); connections opened before this member's
// intake started are learnt from the others. The servers whose agents
// were on the member that shut down are given to MemberGone.
func TestIntakeInACluster(t *testing.T) {
	a := startMember(t)
	b := startMember(t, a)
	c := startMember(t, a, b)
	waitMembers(t, 3, a, b, c)

	// Connected to b before a's intake starts: learnt from b's CONNZ.
	early := dial(t, b, "early.test/1")
	rec := &recorder{}
	gone := make(chan []string, 4)
	in, err := StartIntake(a, IntakeOptions{Subjects: schema.Subjects{Prefix: "simgate"}, Sink: rec,
		Logger: slog.New(slog.DiscardHandler), Peers: a.Peers, MemberGone: func(e []string) { gone <- e }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	lostOf := func(name string) func() error {
		return func() error {
			if _, lost := rec.counts(); len(lost) == 0 || lost[len(lost)-1] != name {
				return fmt.Errorf("lost so far: %v", lost)
			}
			return nil
		}
	}
	early.Close()
	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, lostOf("early.test/1"))

	// A connection on a live member closes: lost at once, seen from a.
	onB := dial(t, b, "b.test/1")
	if err := onB.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.conns["b.test/1"] != 1 {
			return fmt.Errorf("a has not seen b.test/1 connect")
		}
		return nil
	})
	onB.Close()
	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, lostOf("b.test/1"))

	// A member shuts down with an agent on it: not lost, and forgotten.
	onC, err := nats.Connect(c.ClientURL(), nats.Name("c.test/1"), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer onC.Close()
	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.conns["c.test/1"] != 1 {
			return fmt.Errorf("a has not seen c.test/1 connect")
		}
		return nil
	})
	_, before := rec.counts()
	c.Shutdown()
	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		in.mu.Lock()
		defer in.mu.Unlock()
		if n := in.conns["c.test/1"]; n != 0 {
			return fmt.Errorf("c.test/1 still counted %d times", n)
		}
		return nil
	})
	waitMembers(t, 2, a, b)
	if _, lost := rec.counts(); len(lost) != len(before) {
		t.Errorf("a member's shutdown marked its agents lost: %v", lost[len(before):])
	}
	// Its agents' servers are told, so that their silence is judged from now.
	select {
	case e := <-gone:
		if len(e) != 1 || e[0] != "c.test/1" {
			t.Errorf("MemberGone(%q), want c.test/1", e)
		}
	case <-time.After(5 * time.Second):
		t.Error("MemberGone was not called for the member that shut down")
	}
}
