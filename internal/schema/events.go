package schema

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/domain"
)

// Event is a state change of one server, published by the coordinator on
// <prefix>.event.<kind>.<node>. The load fields repeat the heartbeat's names.
type Event struct {
	Server string   `json:"server"`
	Kind   string   `json:"kind"`
	From   string   `json:"from"`
	To     string   `json:"to"`
	Reason string   `json:"reason"`
	Load   *float64 `json:"load,omitempty"`
	domain.Vector
	Time string `json:"time"`
}

// EventFor is the event of a state change.
func EventFor(ch domain.Change) Event {
	ev := Event{Server: ch.Server, Kind: eventKind(ch), From: ch.From.String(), To: ch.To.String(),
		Reason: ch.Reason, Time: ch.At.UTC().Format(time.RFC3339Nano)}
	if ch.Reported {
		load := ch.Load
		ev.Load, ev.Vector = &load, ch.Vector
	}
	return ev
}

// eventKind names a change as PROTOCOL.md §2's event kinds do.
func eventKind(ch domain.Change) string {
	switch ch.To {
	case domain.Down, domain.Unknown:
		return EventDown
	case domain.Full:
		return EventFull
	case domain.Draining:
		return EventDraining
	}
	if ch.From == domain.Full {
		return EventAvailable
	}
	return EventUp
}

// Publisher publishes the coordinator's events.
type Publisher struct {
	nc   *nats.Conn
	subj Subjects
}

// NewPublisher publishes on nc under subj's prefix.
func NewPublisher(nc *nats.Conn, subj Subjects) *Publisher { return &Publisher{nc: nc, subj: subj} }

// Publish sends ev on its subject. NATS buffers it; it never blocks on the network.
func (p *Publisher) Publish(ev Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return p.nc.Publish(p.subj.Event(ev.Kind, ev.Server), data)
}
