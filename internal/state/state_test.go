package state

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/notify"
	"github.com/simgate/simgate/internal/schema"
)

// open starts an embedded server storing under dir and the bucket over it.
func open(t *testing.T, dir string) (*bus.Server, *KV) {
	t.Helper()
	srv, err := bus.StartServer(bus.ServerOptions{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := srv.Connect("test-state")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := New(nc, 1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); srv.Shutdown() })
	return srv, kv
}

func mail(id, subject string) notify.Mail {
	return notify.Mail{ID: id, Subject: subject, Body: "Hello,\n\n" + subject + "\n", Created: time.Unix(1700000000, 0).UTC()}
}

// TestMailsSurviveARestart: what one run keeps, the next finds; what was
// sent (no longer in the set) is gone.
func TestMailsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	srv, kv := open(t, dir)
	if err := kv.SaveMails([]notify.Mail{mail("1-a", "one"), mail("2-b", "two"), mail("3-c", "three")}); err != nil {
		t.Fatal(err)
	}
	if err := kv.SaveMails([]notify.Mail{mail("1-a", "one"), mail("3-c", "three")}); err != nil {
		t.Fatal(err)
	}
	if err := kv.SaveHolds(map[string]notify.Hold{"a.example/1": {DownOwed: true, DownWindow: time.Unix(1700000000, 0).UTC()}}); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()

	_, kv2 := open(t, dir)
	got, err := kv2.LoadMails()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range got {
		ids[m.ID] = true
	}
	if len(got) != 2 || !ids["1-a"] || !ids["3-c"] {
		t.Errorf("after a restart: %+v", got)
	}
	holds, err := kv2.LoadHolds()
	if err != nil {
		t.Fatal(err)
	}
	if h := holds["a.example/1"]; !h.DownOwed || len(holds) != 1 {
		t.Errorf("holds after a restart: %+v", holds)
	}
	if err := kv2.SaveHolds(map[string]notify.Hold{"a.example/1": {}}); err != nil {
		t.Fatal(err)
	}
	if holds, _ := kv2.LoadHolds(); len(holds) != 0 {
		t.Errorf("a zero hold is not deleted: %+v", holds)
	}
}

// TestSentMailIsNotReadBack: a mail forgotten (sent) is not loaded by a
// coordinator that never saw it, and the markers deleted keys leave are
// swept, so that reading the mails does not grow with every mail sent.
func TestSentMailIsNotReadBack(t *testing.T) {
	_, kv := open(t, t.TempDir())
	old := markerAge
	markerAge = -1
	t.Cleanup(func() { markerAge = old })
	if err := kv.SaveMails([]notify.Mail{mail("1-a", "one"), mail("2-b", "two")}); err != nil {
		t.Fatal(err)
	}
	if err := kv.ForgetMail("1-a"); err != nil {
		t.Fatal(err)
	}
	fresh, err := New(kv.js.Conn(), 1, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fresh.LoadMails()
	if err != nil || len(got) != 1 || got[0].ID != "2-b" {
		t.Fatalf("loaded %+v, %v; want 2-b alone", got, err)
	}
	keys, err := kv.keys(context.Background(), "mail")
	if err != nil || len(keys) != 1 {
		t.Errorf("subjects left under mail: %v, %v; want the pending mail's alone", keys, err)
	}
}

// TestCorruptEntryIsSetAside: an entry that does not decode is moved under
// corrupt.<key> and the others load: never a reason not to send the rest.
func TestCorruptEntryIsSetAside(t *testing.T) {
	_, kv := open(t, t.TempDir())
	if err := kv.SaveMails([]notify.Mail{mail("1-a", "one")}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	raw, err := kv.js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	for key, v := range map[string]string{"mail.2-b": "{not json", "mail.3-c": `{"id":"other","subject":"s","body":"b","created":"2026-01-01T00:00:00Z"}`, "hold.x": `{"server":""}`} {
		if _, err := raw.Put(ctx, key, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := kv.LoadMails()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "1-a" {
		t.Errorf("loaded %+v", got)
	}
	if _, err := kv.LoadHolds(); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"corrupt.mail.2-b", "corrupt.mail.3-c", "corrupt.hold.x"} {
		if _, err := raw.Get(ctx, key); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	if _, err := raw.Get(ctx, "mail.2-b"); err != jetstream.ErrKeyNotFound {
		t.Errorf("the corrupt entry stayed in place: %v", err)
	}
}

// TestLargeMailIsKept: a body over the payload limit is shortened, keeping
// its opening lines, rather than never kept.
func TestLargeMailIsKept(t *testing.T) {
	_, kv := open(t, t.TempDir())
	m := mail("1-a", "big")
	m.Body = "Hello,\n\nopening line\n" + strings.Repeat("why ", 3000)
	if err := kv.SaveMails([]notify.Mail{m}); err != nil {
		t.Fatal(err)
	}
	got, err := kv.LoadMails()
	if err != nil || len(got) != 1 {
		t.Fatalf("%v %+v", err, got)
	}
	if !strings.HasPrefix(got[0].Body, "Hello,\n\nopening line\n") || !strings.HasSuffix(got[0].Body, "[…]\n") {
		t.Errorf("body %q…", got[0].Body[:40])
	}
}

// TestDurablesOnTheFarmBucketSwept: durable consumers on the farm bucket
// (1,000 of them made every later kv watch fail) are deleted; an
// ephemeral one, what kv watch makes, is left alone.
func TestDurablesOnTheFarmBucketSwept(t *testing.T) {
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
	if n, err := f.SweepDurables(); n != 0 || err != nil {
		t.Fatalf("before the bucket exists: %d, %v", n, err)
	}
	if err := f.Put("a.test/1", []byte(`{"state":"up"}`)); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	stream, err := js.Stream(ctx, "KV_"+schema.ServersBucket)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "d" + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Issue 31: ephemeral pull consumers allowed an hour of inactivity.
	for range 20 {
		if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{InactiveThreshold: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{}); err != nil {
		t.Fatal(err)
	}
	if n, err := f.SweepDurables(); n != 23 || err != nil {
		t.Errorf("swept %d consumers (%v), want the 3 durable and the 20 lingering ones", n, err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Consumers != 1 {
		t.Errorf("%d consumers left (%v), want the ordered one (a watch)", info.State.Consumers, err)
	}
}
