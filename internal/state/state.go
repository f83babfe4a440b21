// Package state keeps the coordinators' shared state in a JetStream
// key-value bucket: the pending mails and the mail hold-off state, so that
// a restarted coordinator, or the member of a cluster that takes over from
// a dead one, continues exactly where the last one stopped. One coordinator
// alone uses the same bucket with one replica: there is one code path.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/simgate/simgate/internal/notify"
	"github.com/simgate/simgate/internal/schema"
)

// Bucket is the key-value bucket the coordinators keep their state in.
const Bucket = "simgate-state"

// opTimeout bounds every operation: a cluster without quorum makes the
// callers retry later, never hang.
const opTimeout = 3 * time.Second

// maxValue is the largest value written: the embedded server's payload
// limit (a heartbeat's) with room for the protocol.
const maxValue = schema.MaxHeartbeat - 256

// KV is the state bucket. It opens lazily: a cluster member may start
// before a quorum of members is up, and must serve /session meanwhile.
type KV struct {
	js       jetstream.JetStream
	replicas int
	log      *slog.Logger

	// mu guards kv, manifest and noted; it is never held across a
	// JetStream call.
	mu sync.Mutex
	kv jetstream.KeyValue
	// mailsMu guards mails and makes one mail save (or load) at a time:
	// held across their JetStream calls, which only mail saves wait for
	// (one goroutine makes them: the queue's); drains and hold-off writes
	// do not (LOCKS.md).
	mailsMu sync.Mutex
	mails   map[string]notify.Mail // what the bucket holds, as last read or written
	swept   time.Time              // when delete markers were last swept (sweep)
	// manifest, when set, is the file the bucket's entry count is kept in
	// after each write (ManifestPath); noted is the count last written.
	manifest string
	noted    uint64
}

// KeepManifest makes k record its entry count in path after each write,
// and report, when it opens, a bucket that reads as empty where the last
// count was not.
func (k *KV) KeepManifest(path string) {
	k.mu.Lock()
	k.manifest = path
	k.mu.Unlock()
}

// note records the bucket's entry count in the manifest.
func (k *KV) note(ctx context.Context, kv jetstream.KeyValue) {
	k.mu.Lock()
	path := k.manifest
	k.mu.Unlock()
	if path == "" {
		return
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if st.Values() == k.noted {
		return
	}
	k.noted = st.Values()
	if err := writeManifest(path, manifest{Entries: k.noted, At: time.Now().UTC()}); err != nil {
		k.log.Warn("cannot record the state bucket's entry count", "file", path, "error", err)
	}
}

// checkOpened reports a bucket that reads as empty though the manifest
// says it held entries: a store damaged on disk loses them silently
// otherwise.
func (k *KV) checkOpened(ctx context.Context, kv jetstream.KeyValue) {
	k.mu.Lock()
	path := k.manifest
	k.mu.Unlock()
	if path == "" {
		return
	}
	m, ok := readManifest(path)
	st, err := kv.Status(ctx)
	if err != nil {
		return
	}
	k.mu.Lock()
	k.noted = st.Values()
	k.mu.Unlock()
	if ok && m.Entries > 0 && st.Values() == 0 {
		k.log.Error("the state store reads as empty, but held entries when last written: they are lost",
			"bucket", Bucket, "entries_lost", m.Entries, "last_written", m.At,
			"what", "pending mails, mail hold-off states and drains; the drains must be made again")
		_ = writeManifest(path, manifest{Entries: 0, At: time.Now().UTC()})
	}
}

// New returns the state bucket over nc, with replicas copies.
func New(nc *nats.Conn, replicas int, log *slog.Logger) (*KV, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if replicas < 1 {
		replicas = 1
	}
	return &KV{js: js, replicas: replicas, log: log}, nil
}

// bucket opens (creating it when needed) the bucket. Two callers may both
// create it: CreateOrUpdate is idempotent, and the first kept wins.
func (k *KV) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	k.mu.Lock()
	kv := k.kv
	k.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := k.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       Bucket,
		Description:  "simgate coordinators: pending mails (mail.*), mail hold-off state (hold.*), drains (drain.*)",
		History:      1,
		Replicas:     k.replicas,
		Storage:      jetstream.FileStorage,
		MaxValueSize: maxValue,
	})
	if err != nil {
		return nil, fmt.Errorf("state bucket %s (replicas %d): %w", Bucket, k.replicas, err)
	}
	k.mu.Lock()
	first := k.kv == nil
	if first {
		k.kv = kv
	} else {
		kv = k.kv
	}
	k.mu.Unlock()
	if first {
		k.checkOpened(ctx, kv)
	}
	return kv, nil
}

// open opens the bucket for one operation of at most opTimeout; done
// ends it.
func (k *KV) open() (context.Context, jetstream.KeyValue, func(), error) {
	ctx, done := context.WithTimeout(context.Background(), opTimeout)
	kv, err := k.bucket(ctx)
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	return ctx, kv, done, nil
}

// keys lists the keys under prefix, as the stream's leader holds them.
func (k *KV) keys(ctx context.Context, prefix string) ([]string, error) {
	st, err := k.js.Stream(ctx, "KV_"+Bucket)
	if err != nil {
		return nil, err
	}
	// Answered by the stream's leader, with every subject under prefix
	// (a deleted key's too: its marker; leaderGet tells them apart).
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(kvSubject(prefix+".>")))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		out = append(out, strings.TrimPrefix(subj, kvSubject("")))
	}
	return out, nil
}

// kvSubject is the stream subject key is kept on.
func kvSubject(key string) string { return "$KV." + Bucket + "." + key }

// errNoValue is leaderGet's answer for a key deleted, purged or never
// written.
var errNoValue = errors.New("no value")

// leaderGet reads key's latest value from the stream's leader. A KV Get
// may be answered by any replica (direct get), and right after a change
// of leader a replica still held a mail the old leader had sent and
// deleted: the new leader mailed it again (issue 30). The plain message
// get is answered by the stream's leader alone.
func (k *KV) leaderGet(ctx context.Context, key string) ([]byte, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": kvSubject(key)})
	msg, err := k.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+Bucket, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *struct {
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("reading %s from the stream's leader: %w", key, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return nil, errNoValue
		}
		return nil, fmt.Errorf("reading %s from the stream's leader: %s", key, resp.Error.Description)
	}
	if resp.Message == nil {
		return nil, errNoValue
	}
	if op := kvOperation(resp.Message.Header); op == "DEL" || op == "PURGE" {
		return nil, errNoValue
	}
	return resp.Message.Data, nil
}

// kvOperation is the KV-Operation header of a NATS header block ("" for
// a put).
func kvOperation(hdr []byte) string {
	for _, line := range strings.Split(string(hdr), "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "KV-Operation") {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// load reads every value under prefix into decode, as the stream's leader
// holds them; a value that does not decode is set aside under
// "corrupt.<key>" and logged.
func (k *KV) load(ctx context.Context, kv jetstream.KeyValue, prefix string, decode func(key string, v []byte) error) error {
	keys, err := k.keys(ctx, prefix)
	if err != nil {
		return err
	}
	for _, key := range keys {
		v, err := k.leaderGet(ctx, key)
		if errors.Is(err, errNoValue) {
			continue
		}
		if err != nil {
			return err
		}
		if err := decode(key, v); err != nil {
			_, perr := kv.Put(ctx, "corrupt."+key, v)
			derr := kv.Delete(ctx, key)
			k.log.Error("state entry unreadable: set aside", "bucket", Bucket, "key", key, "aside", "corrupt."+key,
				"error", err, "put_error", perr, "delete_error", derr)
		}
	}
	return nil
}

func mailKey(id string) string { return "mail." + schema.Node(id) }

// LoadMails implements notify.Store.
func (k *KV) LoadMails() ([]notify.Mail, error) {
	k.mailsMu.Lock()
	defer k.mailsMu.Unlock()
	ctx, kv, done, err := k.open()
	if err != nil {
		return nil, err
	}
	defer done()
	got := map[string]notify.Mail{}
	err = k.load(ctx, kv, "mail", func(key string, v []byte) error {
		var m notify.Mail
		if err := json.Unmarshal(v, &m); err != nil {
			return err
		}
		if m.ID == "" || m.Subject == "" || m.Body == "" || m.Created.IsZero() || mailKey(m.ID) != key {
			return fmt.Errorf("a mail without its ID, subject, body or creation time")
		}
		got[m.ID] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	k.mails = got
	out := make([]notify.Mail, 0, len(got))
	for _, m := range got {
		out = append(out, m)
	}
	return out, nil
}

// SaveMails implements notify.Store: it writes the mails that changed and
// deletes the ones no longer pending.
func (k *KV) SaveMails(mails []notify.Mail) error {
	k.mailsMu.Lock()
	defer k.mailsMu.Unlock()
	ctx, kv, done, err := k.open()
	if err != nil {
		return err
	}
	defer done()
	defer k.note(ctx, kv) // before done: its context
	if k.mails == nil {
		// Learn what the bucket holds, to delete what is no longer pending.
		keys, err := k.keys(ctx, "mail")
		if err != nil {
			return err
		}
		k.mails = map[string]notify.Mail{}
		for _, key := range keys {
			k.mails[strings.TrimPrefix(key, "mail.")] = notify.Mail{}
		}
	}
	want := make(map[string]bool, len(mails))
	for _, m := range mails {
		want[schema.Node(m.ID)] = true
		if old, ok := k.mails[schema.Node(m.ID)]; ok && old == m {
			continue
		}
		data, _ := json.Marshal(m)
		for len(data) > maxValue && len(m.Body) > 0 {
			// The heartbeat-sized limit: keep the opening lines, which say what happened.
			m.Body = m.Body[:len(m.Body)*3/4] + "\n[…]\n"
			data, _ = json.Marshal(m)
		}
		if _, err := kv.Put(ctx, mailKey(m.ID), data); err != nil {
			return err
		}
		k.mails[schema.Node(m.ID)] = m
	}
	for id := range k.mails {
		if want[id] {
			continue
		}
		if err := kv.Delete(ctx, "mail."+id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		delete(k.mails, id)
	}
	k.sweep(ctx, kv)
	return nil
}

// ForgetMail deletes one mail from the bucket: a mail sent leaves it
// whoever leads (notify's Queue, right after SMTP took it).
func (k *KV) ForgetMail(id string) error {
	k.mailsMu.Lock()
	defer k.mailsMu.Unlock()
	ctx, kv, done, err := k.open()
	if err != nil {
		return err
	}
	defer done()
	if err := kv.Delete(ctx, mailKey(id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	if k.mails != nil {
		delete(k.mails, schema.Node(id))
	}
	k.sweep(ctx, kv)
	return nil
}

// markerAge is how long a deleted key's marker stays in the bucket: every
// mail has its own key, and each marker left would cost every later read
// of the mails (load gets each key from the stream's leader). A variable
// for the tests (negative: every marker, at every write).
var markerAge = time.Hour

// sweep removes the delete markers older than markerAge, at most once per
// markerAge; mailsMu is held. A replica that lags by an hour is not read
// (keys and leaderGet ask the stream's leader).
func (k *KV) sweep(ctx context.Context, kv jetstream.KeyValue) {
	if time.Since(k.swept) < markerAge {
		return
	}
	k.swept = time.Now()
	if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(markerAge)); err != nil {
		k.log.Debug("cannot sweep the state bucket's delete markers; will retry", "error", err)
		k.swept = time.Time{}
	}
}

// hold is one server's mail state as the bucket keeps it.
type hold struct {
	Server string `json:"server"`
	notify.Hold
}

// LoadHolds implements notify.Store.
func (k *KV) LoadHolds() (map[string]notify.Hold, error) {
	ctx, kv, done, err := k.open()
	if err != nil {
		return nil, err
	}
	defer done()
	out := map[string]notify.Hold{}
	err = k.load(ctx, kv, "hold", func(key string, v []byte) error {
		var h hold
		if err := json.Unmarshal(v, &h); err != nil {
			return err
		}
		if h.Server == "" || "hold."+schema.Node(h.Server) != key {
			return fmt.Errorf("the state of no server, or of another one")
		}
		out[h.Server] = h.Hold
		return nil
	})
	return out, err
}

// SaveHolds implements notify.Store.
func (k *KV) SaveHolds(changed map[string]notify.Hold) error {
	ctx, kv, done, err := k.open()
	if err != nil {
		return err
	}
	defer done()
	defer k.note(ctx, kv) // before done: its context
	for server, h := range changed {
		key := "hold." + schema.Node(server)
		if h == (notify.Hold{}) {
			if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return err
			}
			continue
		}
		data, _ := json.Marshal(hold{Server: server, Hold: h})
		if _, err := kv.Put(ctx, key, data); err != nil {
			return err
		}
	}
	return nil
}

// Drain is an operator's drain as the bucket keeps it (drain.<node>).
type Drain struct {
	Server string    `json:"server"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// SetDrain keeps server drained by by ("" lifts it), for every member and
// across restarts.
func (k *KV) SetDrain(server, by string) error {
	ctx, kv, done, err := k.open()
	if err != nil {
		return err
	}
	defer done()
	defer k.note(ctx, kv) // before done: its context
	key := "drain." + schema.Node(server)
	if by == "" {
		if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		return nil
	}
	data, _ := json.Marshal(Drain{Server: server, By: by, At: time.Now().UTC()})
	_, err = kv.Put(ctx, key, data)
	return err
}

// WatchDrains calls apply with every drain kept, then with each change
// (by "" when lifted; node is the server's node, its entry is not kept
// then), until ctx ends; it reopens the watch when the bucket is not
// reachable yet or the watch fails.
//
// loaded, when set, is called once, when the drains kept are all applied.
func (k *KV) WatchDrains(ctx context.Context, apply func(node string, d Drain), loaded func()) {
	var once sync.Once
	caught := func() {
		if loaded != nil {
			once.Do(loaded)
		}
	}
	for ctx.Err() == nil {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		kv, err := k.bucket(octx)
		cancel()
		if err == nil {
			var w jetstream.KeyWatcher
			if w, err = kv.Watch(ctx, "drain.*"); err == nil {
				k.follow(ctx, w, apply, caught)
				_ = w.Stop()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// ReadDrains reads every drain kept, from the cluster's state now, and
// calls apply with each (as WatchDrains does), within opTimeout: a member
// back from a cut reads what the others drained meanwhile. self is this
// member's NATS server name: its copy of the bucket must have caught up
// with the stream's leader first (a watch may read it: right after a
// heal it lacked the drain made meanwhile, and 100 visitors went to the
// drained server); an error until it has.
func (k *KV) ReadDrains(ctx context.Context, self string, apply func(node string, d Drain)) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	kv, err := k.bucket(ctx)
	if err != nil {
		return err
	}
	st, err := k.js.Stream(ctx, "KV_"+Bucket)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx) // answered by the stream's leader
	if err != nil {
		return err
	}
	if c := info.Cluster; c != nil && c.Leader != self {
		caught := false
		for _, r := range c.Replicas {
			if r.Name == self {
				caught = r.Current && r.Lag == 0
			}
		}
		if !caught {
			return fmt.Errorf("this member's copy of the state has not caught up with the leader %s yet", c.Leader)
		}
	}
	w, err := kv.Watch(ctx, "drain.*")
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	done := false
	k.follow(ctx, w, apply, func() { done = true; cancel() })
	if !done {
		return fmt.Errorf("reading the drains: %w", ctx.Err())
	}
	return nil
}

func (k *KV) follow(ctx context.Context, w jetstream.KeyWatcher, apply func(string, Drain), caught func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				caught() // the kept ones are all delivered
				continue
			}
			node := strings.TrimPrefix(e.Key(), "drain.")
			if e.Operation() != jetstream.KeyValuePut {
				apply(node, Drain{})
				continue
			}
			var d Drain
			if err := json.Unmarshal(e.Value(), &d); err != nil || d.Server == "" || d.By == "" {
				k.log.Error("drain entry unreadable: ignored", "key", e.Key(), "error", err)
				continue
			}
			apply(node, d)
		}
	}
}

// ServersKV is the bucket of the farm's state (bus.ServersBucket): one key per
// server node, its latest state, for `nats kv watch simgate-servers`.
// Written by the coordinators' leader, read by monitors and admins.
type ServersKV struct {
	js       jetstream.JetStream
	replicas int
	mu       sync.Mutex // guards kv; held across one Put (at most opTimeout)
	kv       jetstream.KeyValue
}

// NewServersKV returns the farm bucket over nc, with replicas copies.
func NewServersKV(nc *nats.Conn, replicas int) (*ServersKV, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &ServersKV{js: js, replicas: max(replicas, 1)}, nil
}

// Put writes one server's state under its node.
func (f *ServersKV) Put(server string, value []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kv == nil {
		kv, err := f.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:       schema.ServersBucket,
			Description:  "simgate: each simulation server's latest state, by node (written by the coordinators)",
			History:      1,
			Replicas:     f.replicas,
			Storage:      jetstream.FileStorage,
			MaxValueSize: maxValue,
		})
		if err != nil {
			return fmt.Errorf("farm bucket %s: %w", schema.ServersBucket, err)
		}
		f.kv = kv
	}
	_, err := f.kv.Put(ctx, schema.Node(server), value)
	return err
}

// Prune deletes the entries of servers not in keep (their nodes): a
// server removed from the configuration leaves the farm bucket at the
// next sweep instead of showing its last state for ever. It returns how
// many went.
func (f *ServersKV) Prune(keep map[string]bool) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	f.mu.Lock()
	kv := f.kv
	f.mu.Unlock()
	if kv == nil {
		return 0, nil // nothing written yet by this member
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	var stale []string
	for k := range lister.Keys() {
		if !keep[k] {
			stale = append(stale, k)
		}
	}
	_ = lister.Stop()
	n := 0
	for _, k := range stale {
		if err := kv.Delete(ctx, k); err == nil {
			n++
		}
	}
	return n, nil
}

// SweepDurables deletes the consumers others made on the farm bucket's
// stream that outlive their use, and returns how many: monitors and admins
// may watch it (an ordered consumer, push-bound or pulling, gone soon after
// its client), but 1,000 durable ones made every later `nats kv watch`
// fail, and so did 1,000 ephemeral pull consumers with an hour of
// inactivity allowed (issue 31). Swept: every durable one, and every
// ephemeral one that no subscription is bound to, has no pull waiting and
// may sit idle longer than an ordered consumer's five minutes. The
// coordinators make none there.
func (f *ServersKV) SweepDurables() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	s, err := f.js.Stream(ctx, "KV_"+schema.ServersBucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var stale []string
	l := s.ListConsumers(ctx)
	for info := range l.Info() {
		lingering := info.Config.InactiveThreshold == 0 || info.Config.InactiveThreshold > orderedIdle
		if info.Config.Durable != "" || (!info.PushBound && info.NumWaiting == 0 && lingering) {
			stale = append(stale, info.Name)
		}
	}
	if err := l.Err(); err != nil {
		return 0, err
	}
	// Deleted by a few at once, each within its own time: 1,000 one by one
	// outlasted a single opTimeout.
	var n atomic.Int64
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(len(stale), 8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				if err := s.DeleteConsumer(ctx, name); err == nil {
					n.Add(1)
				}
				cancel()
			}
		}()
	}
	for _, name := range stale {
		work <- name
	}
	close(work)
	wg.Wait()
	return int(n.Load()), nil
}

// orderedIdle is the inactivity an ordered consumer (a watch) is allowed.
const orderedIdle = 5 * time.Minute
