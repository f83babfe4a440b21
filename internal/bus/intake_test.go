package bus

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/testutil"
)

// recorder is a Sink that remembers what it was given.
type recorder struct {
	mu    sync.Mutex
	known map[string]bool
	beats []schema.Heartbeat
	lost  []string
}

func (r *recorder) Heartbeat(hb schema.Heartbeat) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known != nil && !r.known[hb.Server] {
		return errors.New("unknown")
	}
	r.beats = append(r.beats, hb)
	return nil
}

func (r *recorder) ConnectionLost(entry string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = append(r.lost, entry)
}

func (r *recorder) counts() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.beats), append([]string(nil), r.lost...)
}

func startIntake(t *testing.T, rec *recorder) (*Server, *sync.Map) {
	t.Helper()
	srv, err := StartServer(ServerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	drops := &sync.Map{}
	in, err := StartIntake(srv, IntakeOptions{Subjects: schema.Subjects{Prefix: "simgate"}, Sink: rec,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dropped: func(reason string) {
			v, _ := drops.LoadOrStore(reason, new(int))
			*(v.(*int))++
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	return srv, drops
}

// dial connects to srv over TCP as an outside client named name.
func dial(t *testing.T, srv *Server, name string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), append([]nats.Option{nats.Name(name)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestIntakeDropsBadHeartbeats(t *testing.T) {
	rec := &recorder{known: map[string]bool{"a/1": true}}
	srv, drops := startIntake(t, rec)
	nc := dial(t, srv, "tester")
	ok := `{"v":1,"server":"a/1","status":"up","load":1,"interval":1}`
	publish := func(subj, data string) {
		if err := nc.Publish(subj, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	publish("simgate.load.a_1", `{"v":1,"server":"a/1","status":"up","load":"x","interval":1}`) // schema
	publish("simgate.load.b_1", ok)                                                             // subject mismatch
	publish("simgate.load.a_1.extra", ok)                                                       // not one token
	publish("simgate.load.x_1", `{"v":1,"server":"x/1","status":"up","load":1,"interval":1}`)   // unknown server
	publish("simgate.load.a_1", ok)                                                             // the one good
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A payload over 4 KiB is refused by the server itself.
	if err := nc.Publish("simgate.load.a_1", make([]byte, 5000)); err == nil {
		t.Error("oversize payload accepted by the client")
	}
	testutil.WaitFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		n, _ := rec.counts()
		if n != 1 {
			return fmt.Errorf("%d heartbeats applied", n)
		}
		for _, r := range []string{schema.DropSchema, schema.DropSubject, schema.DropUnknown} {
			if _, ok := drops.Load(r); !ok {
				return fmt.Errorf("no drop counted for %s", r)
			}
		}
		return nil
	})
}

func TestIntakeSeesConnectionLoss(t *testing.T) {
	rec := &recorder{}
	srv, _ := startIntake(t, rec)
	a1 := dial(t, srv, "a/1")
	a2 := dial(t, srv, "a/1") // a restarted agent, briefly overlapping
	a1.Close()
	b := dial(t, srv, "b/1")
	start := time.Now()
	b.Close()
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		if _, lost := rec.counts(); len(lost) != 1 || lost[0] != "b/1" {
			return fmt.Errorf("lost = %v, want [b/1] (a/1 still has a connection)", lost)
		}
		return nil
	})
	t.Logf("connection loss seen after %v", time.Since(start))
	a2.Close()
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		if _, lost := rec.counts(); len(lost) != 2 {
			return fmt.Errorf("lost = %v", lost)
		}
		return nil
	})
}

// A heartbeat sent as a request (the agent's leaving one) is acknowledged
// only after the sink has it, so the sender may close its connection at once.
func TestIntakeAcknowledgesRequests(t *testing.T) {
	rec := &recorder{known: map[string]bool{"a/1": true}}
	srv, _ := startIntake(t, rec)
	nc := dial(t, srv, "a/1")
	for _, tc := range []struct {
		name, data, want string
	}{
		{"applied", `{"v":1,"server":"a/1","status":"leaving","load":1,"interval":1}`, "ok"},
		{"unknown server", `{"v":1,"server":"b/1","status":"leaving","load":1,"interval":1}`, "dropped: " + schema.DropSubject},
		{"bad schema", `{"v":1}`, "dropped: " + schema.DropSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := rec.counts()
			m, err := nc.Request("simgate.load.a_1", []byte(tc.data), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Data) != tc.want {
				t.Errorf("ack = %q, want %q", m.Data, tc.want)
			}
			after, _ := rec.counts()
			if applied := after > before; applied != (tc.want == "ok") {
				t.Errorf("applied = %v when acknowledged %q", applied, m.Data)
			}
		})
	}
}

// A reply subject outside an inbox gets nothing: the coordinator is not a
// reflector onto event subjects.
func TestIntakeRepliesOnlyToInboxes(t *testing.T) {
	rec := &recorder{known: map[string]bool{"a/1": true}}
	srv, _ := startIntake(t, rec)
	nc := dial(t, srv, "a/1")
	watcher, err := srv.Connect("watcher")
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	events, err := watcher.SubscribeSync("simgate.event.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	hb := []byte(`{"v":1,"server":"a/1","status":"up","load":1,"interval":1}`)
	if err := nc.PublishRequest("simgate.load.a_1", "simgate.event.down.a_1", hb); err != nil {
		t.Fatal(err)
	}
	// An inbox request after it: once answered, the first has been handled.
	if _, err := nc.Request("simgate.load.a_1", hb, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := events.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("the coordinator answered on %s: %q", m.Subject, m.Data)
	}
}

// TestIntakeKnowsConnectionsMadeBeforeIt: agents reconnect the moment a
// restarted coordinator listens, before its intake subscribes to the
// connection advisories. The intake learns them from the server at start,
// so that a same-named connection opening and closing afterwards is not
// taken for the server's last one (150 of 2,000 healthy servers went down
// for 10 s so): its agent's connection is still open.
func TestIntakeKnowsConnectionsMadeBeforeIt(t *testing.T) {
	srv, err := StartServer(ServerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	dial(t, srv, "a.test/1") // the agent, back before the intake
	rec := &recorder{}
	in, err := StartIntake(srv, IntakeOptions{Subjects: schema.Subjects{Prefix: "simgate"}, Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	dup := dial(t, srv, "a.test/1")
	dup.Close()
	// The close is applied once a later connection's connect is: advisories
	// come in order on one subscription.
	dial(t, srv, "marker")
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.conns["marker"] == 0 {
			return errors.New("the marker's connect is not applied yet")
		}
		return nil
	})
	if _, lost := rec.counts(); slices.Contains(lost, "a.test/1") {
		t.Errorf("a server taken down by a duplicate's close while its agent is connected: %v", lost)
	}
}

// TestIntakeAfterAStall: issue 30. A coordinator back from a stall sees
// the connections its agents left close; their heartbeats, now from
// connections on another member, are not held back as stale: Stalled
// releases the one held and takes the next.
func TestIntakeAfterAStall(t *testing.T) {
	rec := &recorder{known: map[string]bool{"a/1": true}}
	srv, err := StartServer(ServerOptions{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	in, err := StartIntake(srv, IntakeOptions{Subjects: schema.Subjects{Prefix: "simgate"}, Sink: rec,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	dial(t, srv, "a/1").Close() // the connection the agent left
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		if _, lost := rec.counts(); len(lost) != 1 {
			return fmt.Errorf("lost = %v", lost)
		}
		return nil
	})
	other := dial(t, srv, "tester") // its heartbeats, routed from another member
	hb := []byte(`{"v":1,"server":"a/1","status":"up","load":1,"interval":1}`)
	if err := other.Publish("simgate.load.a_1", hb); err != nil {
		t.Fatal(err)
	}
	_ = other.Flush()
	in.Stalled(time.Now())
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		if n, _ := rec.counts(); n != 1 {
			return fmt.Errorf("%d heartbeats applied, want the held one", n)
		}
		return nil
	})
	if err := other.Publish("simgate.load.a_1", hb); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		if n, _ := rec.counts(); n != 2 {
			return fmt.Errorf("%d heartbeats applied, want 2", n)
		}
		return nil
	})
}

// TestIntakeTakesALeavingHeartbeatAfterItsConnection: a leaving heartbeat
// sent by hand on a short-lived connection named after the server may be
// read after that connection's CONNECT and DISCONNECT advisories; it is
// taken (it cannot bring the server back), where another status would be
// held as stale.
func TestIntakeTakesALeavingHeartbeatAfterItsConnection(t *testing.T) {
	rec := &recorder{known: map[string]bool{"a/1": true}}
	srv, _ := startIntake(t, rec)
	dial(t, srv, "a/1").Close()
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		if _, lost := rec.counts(); len(lost) != 1 {
			return fmt.Errorf("lost = %v", lost)
		}
		return nil
	})
	other := dial(t, srv, "tester")
	if err := other.Publish("simgate.load.a_1", []byte(`{"v":1,"server":"a/1","status":"leaving","load":1,"interval":1}`)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 2*time.Second, time.Millisecond, func() error {
		if n, _ := rec.counts(); n != 1 {
			return fmt.Errorf("%d heartbeats applied, want the leaving one", n)
		}
		return nil
	})
}
