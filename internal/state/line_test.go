package state

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/testutil"
	"github.com/simgate/simgate/internal/waitroom"
)

// TestFarmBucketPruned: a server no longer configured leaves the farm bucket.
func TestFarmBucketPruned(t *testing.T) {
	srv, _ := open(t, t.TempDir())
	nc, err := srv.Connect("test-farm")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	f, err := NewServersKV(nc, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"127.0.0.1:2000", "127.0.0.1:2001"} {
		if err := f.Put(s, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := f.Prune(map[string]bool{schema.Node("127.0.0.1:2000"): true})
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	if n, _ := f.Prune(map[string]bool{schema.Node("127.0.0.1:2000"): true}); n != 0 {
		t.Errorf("a second prune removed %d", n)
	}
}

// TestLineKV: the waiting room's line in the bucket, as two members see
// it: a ticket made on one is opened on the other, once; its start and
// seat reach both replicas; a delete leaves both.
func TestLineKV(t *testing.T) {
	srv, _ := open(t, t.TempDir())
	reg := alloc.New(alloc.Options{Servers: []string{"127.0.0.1:2000"}, Threshold: 95, Seed: 1})
	_ = reg.Apply(alloc.Report{Server: "127.0.0.1:2000", Status: alloc.StatusUp, Load: 99, Sessions: 0, MaxSessions: 20,
		Interval: time.Hour, At: time.Now()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	member := func(name string, lead bool) *waitroom.Line {
		nc, err := srv.Connect("test-line-" + name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		kv, err := NewLineKV(nc, 1, time.Hour, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		l := waitroom.New(waitroom.Options{Seats: reg, Store: kv, Self: name, Lead: func() bool { return lead }})
		go kv.Watch(ctx, l)
		return l
	}
	a, b := member("a", true), member("b", false)
	ticket, ok := a.Issue(alloc.Visitor{Addr: "198.51.100.1"})
	if !ok {
		t.Fatal("no ticket")
	}
	w, ok := b.Open(ticket)
	if !ok {
		t.Fatal("the other member could not open the ticket")
	}
	if _, again := a.Open(ticket); again {
		t.Fatal("a ticket opened twice")
	}
	b.Start(w)
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if a.Len() != 1 || b.Len() != 1 {
			return fmt.Errorf("waiting: %d on a, %d on b", a.Len(), b.Len())
		}
		return nil
	})
	// A seat frees: the leader seats the waiter, whose socket is on b.
	_ = reg.Apply(alloc.Report{Server: "127.0.0.1:2000", Status: alloc.StatusUp, Load: 90, Sessions: 0, MaxSessions: 20,
		Interval: time.Hour, At: time.Now()})
	stop := make(chan struct{})
	go a.Run(stop, 20*time.Millisecond) // the leader's passes, as the coordinator runs them
	defer close(stop)
	select {
	case s := <-w.Seat():
		if s != "127.0.0.1:2000" {
			t.Fatalf("seated on %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the seat did not reach the member holding the socket")
	}
	b.Taken(w)
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if a.Len() != 0 || b.Len() != 0 {
			return fmt.Errorf("waiting: %d on a, %d on b, want none", a.Len(), b.Len())
		}
		return nil
	})
}
