// Package bus is simgate's NATS side: the embedded server, the subjects,
// the heartbeat and event schemas (PROTOCOL.md §2), and the coordinator's
// intake of heartbeats and connection losses. It knows nothing of
// placement or HTTP: what it receives goes to a Sink.
package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxHeartbeat is the largest heartbeat the contract allows, in bytes.
const MaxHeartbeat = 4096

// Heartbeat statuses.
const (
	StatusUp          = "up"
	StatusDraining    = "draining"
	StatusServiceDown = "service-down"
	StatusLeaving     = "leaving"
)

// Heartbeat is what an agent publishes on <prefix>.load.<node>.
// Optional fields are pointers so that "absent" and "zero" differ:
// a machine without a GPU omits gpu, gpuMemory and vram.
type Heartbeat struct {
	V           int      `json:"v"`
	Server      string   `json:"server"`
	Status      string   `json:"status"`
	Load        float64  `json:"load"`
	CPU         *float64 `json:"cpu,omitempty"`
	Memory      *float64 `json:"memory,omitempty"`
	Swap        *float64 `json:"swap,omitempty"`
	GPU         *float64 `json:"gpu,omitempty"`
	GPUMemory   *float64 `json:"gpuMemory,omitempty"`
	VRAM        *float64 `json:"vram,omitempty"`
	Sessions    *int     `json:"sessions,omitempty"`
	MaxSessions *int     `json:"maxSessions,omitempty"`
	Interval    float64  `json:"interval"`
	Time        string   `json:"time,omitempty"`
	// Probe is simgate's addition: what the agent's check of its simulation
	// server saw when it failed ("GET http://127.0.0.1:2000/load: connection refused").
	Probe string `json:"probe,omitempty"`
}

// wire mirrors Heartbeat with every field a pointer or raw value, so that
// Decode can tell a missing required field from a zero one.
type wire struct {
	V           *float64 `json:"v"`
	Server      *string  `json:"server"`
	Status      *string  `json:"status"`
	Load        *float64 `json:"load"`
	CPU         *float64 `json:"cpu"`
	Memory      *float64 `json:"memory"`
	Swap        *float64 `json:"swap"`
	GPU         *float64 `json:"gpu"`
	GPUMemory   *float64 `json:"gpuMemory"`
	VRAM        *float64 `json:"vram"`
	Sessions    *float64 `json:"sessions"`
	MaxSessions *float64 `json:"maxSessions"`
	Interval    *float64 `json:"interval"`
	Time        *string  `json:"time"`
	Probe       *string  `json:"probe"`
}

// ErrInvalid wraps every reason a heartbeat is refused.
var ErrInvalid = errors.New("invalid heartbeat")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Decode parses and validates a heartbeat against PROTOCOL.md §2.
// It never panics on any input; every refusal wraps ErrInvalid.
func Decode(data []byte) (Heartbeat, error) {
	if len(data) > MaxHeartbeat {
		return Heartbeat{}, invalid("%d bytes, more than %d", len(data), MaxHeartbeat)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Heartbeat{}, invalid("not a JSON object")
	}
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return Heartbeat{}, invalid("%v", err)
	}
	switch {
	case w.V == nil:
		return Heartbeat{}, invalid("missing v")
	case *w.V != 1:
		return Heartbeat{}, invalid("v is %v, want 1", *w.V)
	case w.Server == nil || *w.Server == "":
		return Heartbeat{}, invalid("missing server")
	case w.Status == nil:
		return Heartbeat{}, invalid("missing status")
	case w.Load == nil:
		return Heartbeat{}, invalid("missing load")
	case w.Interval == nil:
		return Heartbeat{}, invalid("missing interval")
	}
	hb := Heartbeat{V: 1, Server: *w.Server, Status: *w.Status, Load: *w.Load, Interval: *w.Interval,
		CPU: w.CPU, Memory: w.Memory, Swap: w.Swap, GPU: w.GPU, GPUMemory: w.GPUMemory, VRAM: w.VRAM}
	if len(hb.Server) > 255 {
		return Heartbeat{}, invalid("server is %d bytes long", len(hb.Server))
	}
	switch hb.Status {
	case StatusUp, StatusDraining, StatusServiceDown, StatusLeaving:
	default:
		return Heartbeat{}, invalid("status %q is not up, draining, service-down or leaving", hb.Status)
	}
	for _, p := range []struct {
		name string
		v    *float64
	}{{"load", &hb.Load}, {"cpu", hb.CPU}, {"memory", hb.Memory}, {"swap", hb.Swap},
		{"gpu", hb.GPU}, {"gpuMemory", hb.GPUMemory}, {"vram", hb.VRAM}} {
		if p.v != nil && !(*p.v >= 0 && *p.v <= 100) { // also false for NaN
			return Heartbeat{}, invalid("%s %v is not a percentage in [0, 100]", p.name, *p.v)
		}
	}
	if !(hb.Interval > 0 && hb.Interval <= 60) || math.IsNaN(hb.Interval) {
		return Heartbeat{}, invalid("interval %v is not in (0, 60]", hb.Interval)
	}
	var err error
	if hb.Sessions, err = count("sessions", w.Sessions); err != nil {
		return Heartbeat{}, err
	}
	if hb.MaxSessions, err = count("maxSessions", w.MaxSessions); err != nil {
		return Heartbeat{}, err
	}
	if w.Time != nil {
		if _, err := time.Parse(time.RFC3339Nano, *w.Time); err != nil {
			return Heartbeat{}, invalid("time %q is not RFC 3339", *w.Time)
		}
		hb.Time = *w.Time
	}
	if w.Probe != nil {
		hb.Probe = *w.Probe
		if len(hb.Probe) > 512 {
			hb.Probe = hb.Probe[:512]
		}
	}
	return hb, nil
}

// count checks an optional non-negative whole number.
func count(name string, n *float64) (*int, error) {
	if n == nil {
		return nil, nil
	}
	v := *n
	if v != math.Trunc(v) || !(v >= 0 && v <= 1_000_000) {
		return nil, invalid("%s %v is not a whole number in [0, 1000000]", name, v)
	}
	i := int(v)
	return &i, nil
}

// Encode serialises a heartbeat; it is what agents publish.
func (hb Heartbeat) Encode() ([]byte, error) {
	return json.Marshal(hb)
}

// IntervalDuration is the heartbeat's interval as a duration.
func (hb Heartbeat) IntervalDuration() time.Duration {
	return time.Duration(hb.Interval * float64(time.Second))
}
