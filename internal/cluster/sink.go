package cluster

import (
	"time"

	"github.com/simgate/simgate/internal/domain"
	"github.com/simgate/simgate/internal/schema"
)

// Reports is what a Sink needs of the registry (alloc.Registry).
type Reports interface {
	Apply(rep domain.Report) error
	ConnectionLost(entry string)
}

// Sink is the heartbeat intake's sink (bus.Sink): heartbeats become
// registry reports, each applied one shown to OnReport (the mail policy
// watches loads); an agent's lost connection marks its server down only
// while Judges says this member may judge: not while it reaches no
// majority (it sends its agents to the others, which judge them).
type Sink struct {
	Registry Reports
	OnReport func(domain.Report)
	Judges   func() bool
}

// Heartbeat applies hb as received now.
func (s Sink) Heartbeat(hb schema.Heartbeat) error {
	rep := hb.Report(time.Now())
	if err := s.Registry.Apply(rep); err != nil {
		return err
	}
	if s.OnReport != nil {
		s.OnReport(rep)
	}
	return nil
}

// ConnectionLost marks entry's server down, when this member judges.
func (s Sink) ConnectionLost(entry string) {
	if s.Judges != nil && !s.Judges() {
		return
	}
	s.Registry.ConnectionLost(entry)
}
