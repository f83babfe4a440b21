package history

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/simgate/simgate/internal/schema"
)

// The stream's name and bounds: a week and a day of minutes (what the
// what-if replays, and the monitor's week plot, with a day of margin),
// and at most MaxBytes whatever the number of members.
const (
	StreamName = "SIMGATE_HISTORY"
	Keep       = 8 * 24 * time.Hour
	MaxBytes   = 64 << 20
	maxRecord  = schema.MaxHeartbeat - 512 // the embedded server's payload limit, less its headers
)

// Stream is the cluster's shared history: one message per member per
// minute on _simgate.<prefix>.history.<member>, private to the
// coordinators. Limits drop the oldest minutes first.
type Stream struct {
	js       jetstream.JetStream
	subjects string
	prefix   string
	replicas int
	mu       sync.Mutex // guards st; never held across a JetStream call
	st       jetstream.Stream
}

// NewStream is the history over nc, with replicas copies.
func NewStream(nc *nats.Conn, subj schema.Subjects, replicas int) (*Stream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	p := "_simgate." + subj.Prefix + ".history."
	return &Stream{js: js, prefix: p, subjects: p + ">", replicas: max(replicas, 1)}, nil
}

// stream opens the stream, making it the first time.
func (s *Stream) stream(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	st := s.st
	s.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamName,
		Description: "simgate coordinators: the farm's demand, one record per member per minute (README, Capacity)",
		Subjects:    []string{s.subjects},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      Keep,
		MaxBytes:    MaxBytes,
		MaxMsgSize:  maxRecord,
		Storage:     jetstream.FileStorage,
		Replicas:    s.replicas,
		Duplicates:  10 * time.Minute, // a minute kept twice (a retry) is stored once
	})
	if err != nil {
		return nil, fmt.Errorf("history stream %s (replicas %d): %w", StreamName, s.replicas, err)
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
	return st, nil
}

// Publish keeps m.
func (s *Stream) Publish(ctx context.Context, m Minute) error {
	if _, err := s.stream(ctx); err != nil {
		return err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(data) > maxRecord {
		return fmt.Errorf("a history record of %d bytes", len(data))
	}
	id := fmt.Sprintf("%s-%d", schema.Node(m.Member), m.Start.Unix())
	_, err = s.js.Publish(ctx, s.prefix+schema.Node(m.Member), data, jetstream.WithMsgID(id))
	return err
}

// Read returns every record kept from since on, every member's; a record
// that does not decode is skipped and counted in bad.
func (s *Stream) Read(ctx context.Context, since time.Time) (out []Minute, bad int, err error) {
	st, err := s.stream(ctx)
	if err != nil {
		return nil, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, 0, err
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || info.State.LastTime.Before(since) {
		return nil, 0, nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
	if err != nil {
		return nil, 0, err
	}
	it, err := c.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, 0, err
	}
	defer it.Stop()
	go func() { <-ctx.Done(); it.Stop() }() // Next has no context of its own
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return out, bad, err
		}
		var m Minute
		if json.Unmarshal(msg.Data(), &m) != nil || m.V != Version || len(m.Arrivals) != 60 || m.Start.IsZero() {
			bad++
		} else {
			out = append(out, m)
		}
		if meta, err := msg.Metadata(); err != nil || meta.Sequence.Stream >= last {
			return out, bad, err
		}
	}
}
