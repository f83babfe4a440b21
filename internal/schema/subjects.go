package schema

import (
	"strings"

	"github.com/simgate/simgate/internal/domain"
)

// DefaultPrefix is the first token of every simgate subject.
const DefaultPrefix = "simgate"

// Event kinds published on <prefix>.event.<kind>.<node>.
const (
	EventDown      = "down"
	EventUp        = "up"
	EventFull      = "full"
	EventAvailable = "available"
	EventDraining  = "draining"
)

// Node turns a server entry into one NATS token (domain.Node).
func Node(entry string) string { return domain.Node(entry) }

// Subjects builds the subjects under one prefix.
type Subjects struct{ Prefix string }

// Load is the subject the agent of entry publishes its heartbeats on.
func (s Subjects) Load(entry string) string { return s.Prefix + ".load." + Node(entry) }

// LoadAll matches every heartbeat.
func (s Subjects) LoadAll() string { return s.Prefix + ".load.>" }

// Event is the subject of a state change of entry.
func (s Subjects) Event(kind, entry string) string {
	return s.Prefix + ".event." + kind + "." + Node(entry)
}

// Booking is the subject a coordinator publishes each placement on, for
// operators who watch them (nats sub 'simgate.booking.>'), and only while
// someone listens; the members of a cluster exchange theirs on
// MemberBookings, batched.
func (s Subjects) Booking(entry string) string { return s.Prefix + ".booking." + Node(entry) }

// BookingAll matches every booking.
func (s Subjects) BookingAll() string { return s.Prefix + ".booking.>" }

// MemberBookings is where the members of a cluster exchange their bookings,
// batched (one message a millisecond at most, whatever the rate): private
// to the coordinators, who alone may publish or read it.
func (s Subjects) MemberBookings() string { return "_simgate." + s.Prefix + ".bookings" }

// MemberBeats is where the members of a cluster say they are there, a few
// times a second (cluster.Peers): private to the coordinators, as
// MemberBookings.
func (s Subjects) MemberBeats() string { return "_simgate." + s.Prefix + ".members" }

// MemberDrains is where the member that took a drain tells the others it
// at once (the state bucket's watch follows, and keeps it across
// restarts and cuts): private to the coordinators.
func (s Subjects) MemberDrains() string { return "_simgate." + s.Prefix + ".drains" }

// API is the subject of the farm's NATS service endpoint name
// (servers, session, drain.<node>, undrain.<node>).
func (s Subjects) API(endpoint string) string { return s.Prefix + ".api." + endpoint }

// APIAll matches every endpoint of the farm's NATS service.
func (s Subjects) APIAll() string { return s.Prefix + ".api.>" }

// EventAll matches every event.
func (s Subjects) EventAll() string { return s.Prefix + ".event.>" }

// nodeOf returns the node token of a load subject, or "" when the subject
// is not <prefix>.load.<one token>.
func (s Subjects) NodeOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".load.")
	if !ok || rest == "" || strings.Contains(rest, ".") {
		return ""
	}
	return rest
}

// Drop reasons, also used as metric labels.
const (
	DropSchema   = "schema"
	DropSubject  = "subject"
	DropUnknown  = "unknown-server"
	DropSize     = "size"
	DropStale    = "closed-connection"
	DropInternal = "internal"
	// DropPermission: the server refused the publish (a user not bound to the server).
	DropPermission = "permission"
)

// ServersBucket is the key-value bucket of the farm's state, one key per
// server: written by the coordinators, read by monitors and admins.
const ServersBucket = "simgate-servers"

// FarmEntry is one server's value in ServersBucket (PROTOCOL §2), under
// its node: what `nats kv watch simgate-servers` shows.
type FarmEntry struct {
	Server    string  `json:"server"`
	State     string  `json:"state"`
	Reason    string  `json:"reason,omitempty"`
	Since     string  `json:"since"`
	Load      float64 `json:"load"`
	Sessions  int     `json:"sessions"`
	Max       int     `json:"maxSessions,omitempty"`
	LastSeen  string  `json:"lastSeen,omitempty"`
	Source    string  `json:"source,omitempty"`
	DrainedBy string  `json:"drainedBy,omitempty"`
	Probe     string  `json:"probe,omitempty"`
}

// AgentInbox is the inbox prefix of the agent of entry: its request replies
// (the acknowledgement of its leaving heartbeat) arrive under it, and an
// agent user may subscribe there and nowhere else.
func AgentInbox(entry string) string { return "_INBOX_" + Node(entry) }
