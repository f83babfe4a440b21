package coordinator

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/metrics"
)

// booking is what a member publishes on <prefix>.booking.<node> for each
// session it hands out, for the others to count (PROTOCOL §2 bookings).
type booking struct {
	Server string `json:"server"`
	Member string `json:"member"` // the NATS server name of the member that placed it
	At     int64  `json:"at"`     // Unix nanoseconds, for the propagation figure
}

// bookings shares placements between the members of a cluster.
type bookings struct {
	nc      *nats.Conn
	subj    bus.Subjects
	self    string
	reg     *alloc.Registry
	metrics *metrics.Metrics
	log     *slog.Logger
}

// publish tells the other members of a placement made here. It never
// blocks /session: a NATS publish is a buffered write.
func (b *bookings) publish(server string) {
	data, _ := json.Marshal(booking{Server: server, Member: b.self, At: time.Now().UnixNano()})
	if err := b.nc.Publish(b.subj.Booking(server), data); err != nil {
		b.metrics.BookingsLost.Inc()
	}
}

// subscribe applies the other members' bookings to the registry.
func (b *bookings) subscribe() error {
	sub, err := b.nc.Subscribe(b.subj.BookingAll(), func(m *nats.Msg) {
		var bk booking
		if json.Unmarshal(m.Data, &bk) != nil || bk.Member == b.self || bk.Server == "" {
			return
		}
		if b.reg.Booked(bk.Server) {
			b.metrics.BookingsApplied.Inc()
			if bk.At > 0 {
				b.metrics.BookingPropagation.Observe(time.Since(time.Unix(0, bk.At)).Seconds())
			}
		}
	})
	if err == nil {
		err = sub.SetPendingLimits(1<<20, 64<<20)
	}
	return err
}

// clusterSize is how many coordinators the configured cluster has: the
// distinct routes, this member's own address (bound, or resolved to one of
// this machine's addresses on the listen port) counted once. JetStream
// keeps three copies of the state from three members on.
func clusterSize(cl *config.Cluster, bound *net.TCPAddr) int {
	if cl == nil {
		return 1
	}
	local := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				local[ipn.IP.String()] = true
			}
		}
	}
	listenPort := 0
	if bound != nil {
		listenPort = bound.Port
	}
	if _, p, err := net.SplitHostPort(cl.Listen); err == nil {
		if n, _ := strconv.Atoi(p); n != 0 {
			listenPort = n
		}
	}
	others := map[string]bool{}
	for _, r := range cl.Routes {
		u, err := url.Parse(r)
		if err != nil {
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		isSelf := false
		if port == listenPort {
			ips, _ := net.LookupHost(u.Hostname())
			for _, ip := range ips {
				if local[ip] {
					isSelf = true
				}
			}
		}
		if !isSelf {
			others[u.Host] = true
		}
	}
	return len(others) + 1
}

// replicas is how many copies of the state JetStream keeps.
func replicas(members int) int {
	if members >= 3 {
		return 3
	}
	return 1
}
