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

var statuses = map[string]alloc.Status{
	schema.StatusUp:          alloc.StatusUp,
	schema.StatusDraining:    alloc.StatusDraining,
	schema.StatusServiceDown: alloc.StatusServiceDown,
	schema.StatusLeaving:     alloc.StatusLeaving,
}

func (s sink) Heartbeat(hb schema.Heartbeat) error {
	rep := alloc.Report{
		Server:   hb.Server,
		Status:   statuses[hb.Status],
		Load:     hb.Load,
		Vector:   hb.Vector,
		Sessions: -1,
		Interval: hb.IntervalDuration(),
		Note:     hb.Probe,
		At:       time.Now(), // the coordinator's clock: agents' clocks may drift
	}
	if hb.Sessions != nil {
		rep.Sessions = *hb.Sessions
	}
	if hb.MaxSessions != nil {
		rep.MaxSessions = *hb.MaxSessions
	}
	rep.InstantLoad = hb.InstantLoad
	if sh := hb.Sharing; sh != nil {
		rep.Sharing = &alloc.Sharing{Allowed: sh.AllowedRepositories, Blocked: sh.BlockedRepositories,
			Docker: sh.Docker, ShareIdle: 50} // webots-server's default
		if sh.ShareIdleTime != nil {
			rep.Sharing.ShareIdle = *sh.ShareIdleTime
		}
	}
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
