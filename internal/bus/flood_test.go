package bus

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// TestDropFloodDoesNotFloodTheLog: 1,000 malformed heartbeats on one
// subject are each counted, and logged once (the next line, a minute later,
// carries the count).
func TestDropFloodDoesNotFloodTheLog(t *testing.T) {
	srv, err := StartServer(ServerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	var log testutil.Buffer
	var mu sync.Mutex
	dropped := 0
	in, err := StartIntake(srv, IntakeOptions{Subjects: Subjects{Prefix: "simgate"}, Sink: &recorder{},
		Logger:  slog.New(slog.NewTextHandler(&log, nil)),
		Dropped: func(string) { mu.Lock(); dropped++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	nc := dial(t, srv, "flooder")
	for range 1000 {
		if err := nc.Publish("simgate.load.a_1", []byte(`{"v":1,"server":`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if dropped != 1000 {
			return fmt.Errorf("%d drops counted", dropped)
		}
		return nil
	})
	if n := strings.Count(log.String(), "heartbeat dropped"); n != 1 {
		t.Errorf("%d log lines for 1,000 drops of one reason and subject, want 1", n)
	}
}

// TestLostNamesExpire: a heartbeat for a server whose agent's connection
// just closed is dropped (it overtook the close advisory), but only for
// LostFor: then the name is forgotten, so neither the map nor the refusal
// lasts for ever.
func TestLostNamesExpire(t *testing.T) {
	srv, err := StartServer(ServerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	rec := &recorder{}
	in, err := StartIntake(srv, IntakeOptions{Subjects: Subjects{Prefix: "simgate"}, Sink: rec,
		Logger: slog.New(slog.DiscardHandler), LostFor: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	agent := dial(t, srv, "a/1")
	agent.Close()
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		if _, lost := rec.counts(); len(lost) != 1 {
			return fmt.Errorf("lost = %v", lost)
		}
		return nil
	})
	by := dial(t, srv, "by-hand")
	hb := []byte(`{"v":1,"server":"a/1","status":"up","load":1,"interval":1}`)
	ack := func() string {
		m, err := by.Request("simgate.load.a_1", hb, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return string(m.Data)
	}
	if got := ack(); got != "dropped: "+DropStale {
		t.Errorf("right after the close: %q, want dropped", got)
	}
	testutil.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := ack(); got != "ok" {
			return fmt.Errorf("after LostFor: %q", got)
		}
		return nil
	})
	in.mu.Lock()
	n := len(in.lost)
	in.mu.Unlock()
	if n != 0 {
		t.Errorf("%d names still kept as lost", n)
	}
}
