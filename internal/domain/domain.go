// Package domain holds simgate's words, the ones several packages speak:
// a server's state and a change of it, what an agent says of its server,
// the load vector, the roles of NATS users and the node a server entry
// becomes on NATS. It imports nothing of simgate's; the registry (alloc),
// the mail policy (notify), the transport (bus), the HTTP API and the
// configuration depend on it rather than on each other for words
// (layers_test.go holds that).
package domain

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// State is a server's state as the coordinator sees it.
type State uint8

// States, as PROTOCOL.md names them.
const (
	Unknown  State = iota // never heard from since start
	Up                    // reporting, load below the threshold
	Full                  // reporting, load at or above the threshold
	Down                  // silent, connection lost, left, or its simulation server does not answer
	Draining              // takes no new session, keeps running ones
)

var stateNames = [...]string{"unknown", "up", "full", "down", "draining"}

func (s State) String() string { return stateNames[s] }

// Alive says whether a server in state s reports (up, full or draining).
func (s State) Alive() bool { return s == Up || s == Full || s == Draining }

// Status is what an agent says of its server.
type Status uint8

// Statuses of a report.
const (
	StatusUp Status = iota
	StatusDraining
	StatusServiceDown
	StatusLeaving
)

// Vector holds the components of a load report, in percent; nil means not
// reported. The one declaration of them: the heartbeat, the events, the
// HTTP API and the agent's readings embed it (with these JSON names, the
// heartbeat's of PROTOCOL §2).
type Vector struct {
	CPU       *float64 `json:"cpu,omitempty"`
	Memory    *float64 `json:"memory,omitempty"`
	Swap      *float64 `json:"swap,omitempty"`
	GPU       *float64 `json:"gpu,omitempty"`
	GPUMemory *float64 `json:"gpuMemory,omitempty"`
	VRAM      *float64 `json:"vram,omitempty"`
}

// Saturated names the resource that holds the load at its level, following
// the load formula max(cpu, (swap + memory + gpuMemory) / 3, gpu).
func (v Vector) Saturated() string {
	val := func(p *float64) float64 {
		if p == nil {
			return 0
		}
		return *p
	}
	cpu, gpu := val(v.CPU), val(v.GPU)
	mem := (val(v.Swap) + val(v.Memory) + val(v.GPUMemory)) / 3
	switch {
	case v.CPU == nil && v.GPU == nil && v.Memory == nil:
		return "load (no components reported)"
	case cpu >= mem && cpu >= gpu:
		return fmt.Sprintf("CPU (%.4g%%)", cpu)
	case gpu >= mem:
		return fmt.Sprintf("GPU (%.4g%%)", gpu)
	}
	return fmt.Sprintf("memory: RAM, swap and GPU memory average %.4g%%", mem)
}

// Change is a state transition of one server.
type Change struct {
	Server   string
	From, To State
	Reason   string
	Load     float64
	Vector   Vector
	At       time.Time
	Reported bool // Load and Vector come from a report (false for unknown servers)
	Planned  bool // the agent said it was leaving: a stop, not a failure
}

// Roles a NATS user can have.
const (
	RoleAgent   = "agent"   // publishes heartbeats for the servers it is bound to
	RoleMonitor = "monitor" // reads every simgate subject and the farm's state, changes nothing
	RoleAdmin   = "admin"   // a monitor that may also drain and undrain servers
	RoleSystem  = "system"  // the NATS system account: nats server list|ping|report
)

// Node turns a server entry into one NATS token: every character outside
// A-Z a-z 0-9 _ - becomes '_' ("cyberbotics1.epfl.ch/2000" → "cyberbotics1_epfl_ch_2000").
func Node(entry string) string {
	var b strings.Builder
	b.Grow(len(entry))
	for i := 0; i < len(entry); i++ {
		c := entry[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Sharing is what a simulation server runs (its simulation.json, as its
// agent reports it): worlds under Allowed at any load; any other, not
// under Blocked, only with Docker and the load at or below ShareIdle. Its
// JSON is /api/servers' sharing object; the heartbeat's own is
// schema.Sharing.
type Sharing struct {
	Allowed   []string `json:"allowedRepositories"` // URL prefixes
	Blocked   []string `json:"blockedRepositories"`
	Docker    bool     `json:"docker"`
	ShareIdle float64  `json:"shareIdleTime"`
}

// Report is one heartbeat, as the registry takes it (schema.Heartbeat.Report
// converts the wire's).
type Report struct {
	Server      string
	Status      Status
	Load        float64
	Vector      Vector
	Sessions    int // -1: not reported
	MaxSessions int // 0: not reported
	Interval    time.Duration
	Note        string // why the agent thinks its simulation server is unwell
	At          time.Time
	// Polled: the coordinator polled the server's /load (no agent speaks
	// for it); an agent's report always wins over a poll.
	Polled bool
	// Sharing is the server's own repository policy, nil when its agent
	// reports none: it then runs every world (PROTOCOL §1.1).
	Sharing *Sharing
	// InstantLoad is the agent's latest single sample, nil when not
	// reported: what the simulation server compares with its shareIdleTime.
	InstantLoad *float64
}

// Proxies are the peers whose X-Forwarded-For names the client: the
// Apache in front of the coordinators (http.trustedProxies), for HTTP and
// for NATS over WebSocket alike.
type Proxies []netip.Prefix

// ParseProxies reads addresses and CIDR ranges (the configuration checked
// them); one that reads as neither is left out.
func ParseProxies(list []string) Proxies {
	var out Proxies
	for _, t := range list {
		if p, err := netip.ParsePrefix(t); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(t); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return out
}

// Trust says whether ip is one of the proxies.
func (p Proxies) Trust(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, n := range p {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}
