package schema

import (
	"encoding/json"

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
