package coordinator

import (
	"time"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/schema"
)

// sink turns heartbeats into registry reports, and shows each applied
// report to onReport (the mail policy watches loads).
type sink struct {
	reg      *alloc.Registry
	onReport func(alloc.Report)
	// judges says whether this member may judge a server down now: not
	// while it reaches no majority (it sends its agents to the others,
	// which judge them).
	judges func() bool
}

func (s sink) Heartbeat(hb schema.Heartbeat) error {
	rep := hb.Report(time.Now())
	if err := s.reg.Apply(rep); err != nil {
		return err
	}
	if s.onReport != nil {
		s.onReport(rep)
	}
	return nil
}

func (s sink) ConnectionLost(entry string) {
	if s.judges != nil && !s.judges() {
		return
	}
	s.reg.ConnectionLost(entry)
}
