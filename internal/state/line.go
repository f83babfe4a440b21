package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/simgate/simgate/internal/waitroom"
)

// LineBucket holds a cluster's waiting room: one key per ticket, the
// stream's sequence its place in line (PROTOCOL §1.2: first come, first
// served across the members, a ticket valid on every member).
const LineBucket = "simgate-line"

const linePrefix = "t."

// LineKV is the waiting room's line in a JetStream bucket, replicated over
// the cluster: every member watches it and keeps a replica (waitroom.Line).
// It lives in memory: a line outlives no full restart of the cluster, and
// neither do the sockets it is for.
type LineKV struct {
	js       jetstream.JetStream
	replicas int
	maxAge   time.Duration
	log      *slog.Logger
	mu       sync.Mutex // guards kv; never held across a JetStream call
	kv       jetstream.KeyValue
}

// NewLineKV is the line's bucket over nc, with replicas copies; an entry
// left untouched for maxAge (a visitor waits at most queue.maxWait) is
// dropped by the stream itself.
func NewLineKV(nc *nats.Conn, replicas int, maxAge time.Duration, log *slog.Logger) (*LineKV, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &LineKV{js: js, replicas: max(replicas, 1), maxAge: maxAge, log: log}, nil
}

func (s *LineKV) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	kv := s.kv
	s.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       LineBucket,
		Description:  "simgate coordinators: the waiting room's line, one key per ticket (t.<ticket>)",
		History:      1,
		Replicas:     s.replicas,
		Storage:      jetstream.MemoryStorage,
		TTL:          s.maxAge,
		MaxValueSize: maxValue,
	})
	if err != nil {
		return nil, fmt.Errorf("line bucket %s (replicas %d): %w", LineBucket, s.replicas, err)
	}
	s.mu.Lock()
	s.kv = kv
	s.mu.Unlock()
	return kv, nil
}

func (s *LineKV) op() (context.Context, jetstream.KeyValue, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	kv, err := s.bucket(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, kv, cancel, nil
}

// Create adds e and returns its revision, its place in the order.
func (s *LineKV) Create(e waitroom.Entry) (uint64, error) {
	ctx, kv, cancel, err := s.op()
	if err != nil {
		return 0, err
	}
	defer cancel()
	data, _ := json.Marshal(e)
	return kv.Create(ctx, linePrefix+e.Ticket, data)
}

// Claim makes owner the owner of seen's ticket if seen is still its latest
// version: a compare-and-set on the stream's last sequence for the key,
// which the stream's leader decides (a follower's copy may lag), so that
// one socket wins on any member.
func (s *LineKV) Claim(seen waitroom.Entry, owner string) (waitroom.Entry, bool, error) {
	ctx, kv, cancel, err := s.op()
	if err != nil {
		return waitroom.Entry{}, false, err
	}
	defer cancel()
	e := seen
	e.Owner = owner
	data, _ := json.Marshal(e)
	rev, err := kv.Update(ctx, linePrefix+seen.Ticket, data, seen.Rev)
	if err != nil {
		return waitroom.Entry{}, false, nil // another socket claimed it first, or it went
	}
	e.Rev = rev
	return e, true, nil
}

// Put writes e whole.
func (s *LineKV) Put(e waitroom.Entry) (uint64, error) {
	ctx, kv, cancel, err := s.op()
	if err != nil {
		return 0, err
	}
	defer cancel()
	data, _ := json.Marshal(e)
	return kv.Put(ctx, linePrefix+e.Ticket, data)
}

// Delete removes ticket.
func (s *LineKV) Delete(ticket string) error {
	ctx, kv, cancel, err := s.op()
	if err != nil {
		return err
	}
	defer cancel()
	if err := kv.Delete(ctx, linePrefix+ticket); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// Watch tells line of every change to the bucket until ctx ends, the
// entries there already first; it watches again after an error (a cluster
// that lost its majority), every second.
func (s *LineKV) Watch(ctx context.Context, line *waitroom.Line) {
	for ctx.Err() == nil {
		if err := s.watch(ctx, line); err != nil && ctx.Err() == nil {
			s.log.Debug("waiting room: watching the line again", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *LineKV) watch(ctx context.Context, line *waitroom.Line) error {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	kv, err := s.bucket(octx)
	cancel()
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx) // deletes included: a ticket that left leaves every replica
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			if u == nil {
				continue // the entries there already have come
			}
			ticket, ok := strings.CutPrefix(u.Key(), linePrefix)
			if !ok {
				continue
			}
			if u.Operation() != jetstream.KeyValuePut {
				line.Remove(ticket, u.Revision())
				continue
			}
			e, err := decodeEntry(ticket, u)
			if err != nil {
				continue
			}
			line.Apply(e)
		}
	}
}

// decodeEntry reads a stored entry; an entry written without its order
// (the ticket's first version) takes its revision.
func decodeEntry(ticket string, u jetstream.KeyValueEntry) (waitroom.Entry, error) {
	var e waitroom.Entry
	if err := json.Unmarshal(u.Value(), &e); err != nil {
		return e, err
	}
	e.Ticket, e.Rev = ticket, u.Revision()
	if e.Seq == 0 {
		e.Seq = u.Revision()
	}
	return e, nil
}
