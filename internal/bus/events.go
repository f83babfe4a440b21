package bus

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
)

// Event is a state change of one server, published by the coordinator on
// <prefix>.event.<kind>.<node>. The load fields repeat the heartbeat's names.
type Event struct {
	Server    string   `json:"server"`
	Kind      string   `json:"kind"`
	From      string   `json:"from"`
	To        string   `json:"to"`
	Reason    string   `json:"reason"`
	Load      *float64 `json:"load,omitempty"`
	CPU       *float64 `json:"cpu,omitempty"`
	Memory    *float64 `json:"memory,omitempty"`
	Swap      *float64 `json:"swap,omitempty"`
	GPU       *float64 `json:"gpu,omitempty"`
	GPUMemory *float64 `json:"gpuMemory,omitempty"`
	VRAM      *float64 `json:"vram,omitempty"`
	Time      string   `json:"time"`
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
