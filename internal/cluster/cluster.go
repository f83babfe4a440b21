// Package cluster is the coordinators' cluster in one place: who leads
// (Lead, the fence every side effect passes), whether a majority is
// reached (Quorum), how big the configured cluster is (Size, Replicas),
// and the sessions members tell each other they placed (Bookings). A lone
// coordinator uses the same pieces: it always leads and always has its
// quorum.
//
// It knows NATS and the domain's words; the registry it books into and the
// members it counts are interfaces defined here, where they are consumed.
package cluster

// Lead is the one place leadership is asked. The leader is the JetStream
// meta leader, elected by RAFT among the members; exactly one member holds
// it while a majority is up. Every side effect that must happen once for
// the cluster (a mail handed to SMTP, a write of the pending mails, of
// what the administrator was told, of the farm bucket, the sweep of its
// durable consumers) asks Holds immediately before it: a member that lost
// the lead, or hung while another was elected, does nothing more.
//
// The meta leader's title lingers ~10 s on a member cut off from the
// others (issue 30: it mailed false failures meanwhile): a member leads
// only while it also reaches a majority now (Quorum.Current). It lingers a
// moment on a member resumed after a pause, which hears the others again
// before RAFT tells it of the new leader (issue 30: both mailed): a member
// leads only while no other member it hears claims the title (rival).
type Lead struct {
	leader func() bool // nil: a lone coordinator, which always leads
	quorum *Quorum
	rival  func() bool // nil: no one to hear (Peers.RivalLeads)
}

// NewLead follows leader (bus.Server.Leader), fenced by quorum and by
// rival; leader nil for a lone coordinator.
func NewLead(leader func() bool, quorum *Quorum, rival func() bool) *Lead {
	return &Lead{leader: leader, quorum: quorum, rival: rival}
}

// Holds reports whether this member leads now. A side effect is fenced by
// asking it immediately before acting, and not acting on false.
func (l *Lead) Holds() bool {
	if l == nil || l.leader == nil {
		return true
	}
	return l.quorum.Current() && l.leader() && (l.rival == nil || !l.rival())
}
