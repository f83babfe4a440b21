package history

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/schema"
)

// TestStreamKeepsAndReads: minutes kept by two members read back in
// order; a minute kept twice (a retry) is stored once; a record that does
// not decode is skipped and counted; the stream is bounded in age and size.
func TestStreamKeepsAndReads(t *testing.T) {
	srv, err := bus.StartServer(bus.ServerOptions{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect("test-history")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); srv.Shutdown() })
	s, err := NewStream(nc, schema.Subjects{Prefix: schema.DefaultPrefix}, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	for i, member := range []string{"a", "b", "a", "a"} {
		m := Minute{V: Version, Member: member, Start: t0.Add(time.Duration(i/2) * time.Minute), To: 60, Arrivals: make([]uint32, 60), Placed: uint64(i)}
		if i == 3 {
			m.Start = t0 // a retry of a's first minute
			m.Placed = 0
		}
		if err := s.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nc.Request("_simgate."+schema.DefaultPrefix+".history.x", []byte("{not json"), 2*time.Second); err != nil {
		t.Fatal(err) // a JetStream publish: answered with its ack
	}
	got, bad, err := s.Read(ctx, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || bad != 1 {
		t.Fatalf("read %d records (%d bad), want 3 and 1: %+v", len(got), bad, got)
	}
	if got[0].Member != "a" || got[1].Member != "b" || got[2].Placed != 2 {
		t.Errorf("records: %+v", got)
	}
	if later, _, err := s.Read(ctx, time.Now().Add(time.Hour)); err != nil || len(later) != 0 {
		t.Errorf("read from the future: %v, %v", later, err)
	}
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxAge != Keep || cfg.MaxBytes != MaxBytes || cfg.Discard != jetstream.DiscardOld {
		t.Errorf("stream limits: age %v, bytes %d, discard %v", cfg.MaxAge, cfg.MaxBytes, cfg.Discard)
	}
}
