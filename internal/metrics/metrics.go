// Package metrics defines the coordinator's Prometheus metrics in one
// place. Each coordinator owns its own prometheus.Registry, so tests can run
// several side by side.
package metrics

import (
	"strings"
	"sync/atomic"
	"time"

	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the coordinator's collectors.
type Metrics struct {
	Reg *prometheus.Registry

	HeartbeatsReceived prometheus.Counter
	HeartbeatsDropped  *prometheus.CounterVec // by reason
	Sessions           *prometheus.CounterVec // by result: placed, none, limited
	SessionLatency     prometheus.Histogram
	WebSocketClients   *prometheus.GaugeVec   // by endpoint
	Refused            *prometheus.CounterVec // WebSocket clients refused at a cap, by endpoint
	Refusals           *prometheus.CounterVec // /session answered "no server", by reason
	// RefusedBy is every visitor turned away or lost, by why
	// (RefusalReasons): what capacity planning reads (issue 34); turned
	// holds the same counts for the monitor's summary.
	RefusedBy    *prometheus.CounterVec
	turned       map[string]*atomic.Uint64
	Mails        *prometheus.CounterVec // by result: sent, failed, abandoned
	MailsPending prometheus.Gauge
	StateChanges *prometheus.CounterVec // by new state
	// A cluster's bookings (placements shared between members).
	BookingsApplied    prometheus.Counter
	BookingsLost       prometheus.Counter
	BookingsStale      prometheus.Counter
	ClusterQuorum      prometheus.Gauge
	Stalls             prometheus.Counter
	BookingPropagation prometheus.Histogram
	// The waiting room (PROTOCOL §1.2); simgate_queue_waiting is a gauge
	// read from the line at scrape time.
	QueueTickets prometheus.Counter     // places given by /session
	QueueRefused prometheus.Counter     // visitors who could have waited but found the line (or their address's tickets) full
	QueueForged  prometheus.Counter     // sockets that brought an unknown, lapsed or used ticket
	QueueSeated  prometheus.Counter     // seats given from the line
	QueueWait    prometheus.Histogram   // how long a seated visitor waited
	QueueLeft    *prometheus.CounterVec // visitors who left the line unseated, by why
	Relayed      prometheus.Gauge       // sessions relayed now
	RelaysEnded  *prometheus.CounterVec // relayed sessions ended, by which side
}

// New registers every metric, plus the Go and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{
		Reg: r,
		HeartbeatsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_heartbeats_received_total", Help: "Heartbeats applied to the registry."}),
		HeartbeatsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_heartbeats_dropped_total", Help: "Heartbeats dropped, by reason."}, []string{"reason"}),
		Sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_session_requests_total", Help: "/session requests, by result (placed, none, limited, waiting: given a place in the waiting room)."}, []string{"result"}),
		SessionLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "simgate_session_duration_seconds", Help: "Time to answer /session over HTTP.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05}}),
		WebSocketClients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "simgate_websocket_clients", Help: "WebSocket clients connected, by endpoint."}, []string{"endpoint"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_websocket_refused_total", Help: "WebSocket clients refused at a cap (503), by endpoint."}, []string{"endpoint"}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_session_refusals_total", Help: "/session answered without a server, by reason: busy, blocked (everywhere), not-shared (no server runs the repository)."}, []string{"reason"}),
		RefusedBy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_refusals_total", Help: "Visitors turned away, by reason: full (servers up, none with room), drained (none up but drained ones), down (none up), not-ready (this member has no state or no quorum), blocked (no server runs the repository), line-full, rate-limited, gave-up (left the line), waited-too-long (queue.maxWait)."}, []string{"reason"}),
		Mails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_mails_total", Help: "Notification mails, by result (sent, failed attempt, abandoned)."}, []string{"result"}),
		MailsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "simgate_mails_pending", Help: "Notification mails waiting to be sent."}),
		StateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_state_changes_total", Help: "Server state changes, by new state."}, []string{"state"}),
		BookingsApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_bookings_applied_total", Help: "Sessions other members of the cluster placed, counted here."}),
		BookingsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_bookings_unpublished_total", Help: "Sessions placed here that could not be told to the other members."}),
		BookingsStale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_bookings_stale_total", Help: "Sessions other members placed whose news came after the booking would have lapsed: not counted."}),
		ClusterQuorum: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "simgate_cluster_quorum", Help: "1 while this coordinator reaches a majority of its cluster's members (always alone), else 0: without it the member places no visitor, sends no mail and is not ready."}),
		Stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_stalls_total", Help: "Times this coordinator found its process stalled or its clock jumped, and gave every server one more timeout."}),
		BookingPropagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "simgate_booking_propagation_seconds", Help: "From a placement on another member to its booking here (the oldest of each batch).",
			Buckets: []float64{.00025, .0005, .001, .0015, .002, .003, .005, .0075, .01, .025, .1}}),
		QueueTickets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_queue_tickets_total", Help: "Places in the waiting room given by /session."}),
		QueueRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_queue_refused_total", Help: "Visitors who could have waited but found the line full (queue.max) or their address holding its tickets (queue.maxPerAddress)."}),
		QueueForged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_queue_bad_tickets_total", Help: "Waiting-room sockets that brought an unknown, lapsed or already used ticket."}),
		QueueSeated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "simgate_queue_seated_total", Help: "Seats given from the waiting room's line."}),
		QueueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "simgate_queue_wait_seconds", Help: "How long a visitor seated from the line waited.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600}}),
		QueueLeft: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_queue_left_total", Help: "Visitors who left the line without a seat, by why: closed (its page), max-wait, no-server (none that would take it is up), lapsed (its socket never came), unreachable (its seats could not be reached), member-lost (the member holding its socket went)."}, []string{"reason"}),
		Relayed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "simgate_relayed_sessions", Help: "Sessions the waiting room relays now (they end with this process)."}),
		RelaysEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simgate_relayed_sessions_ended_total", Help: "Relayed sessions ended, by who ended them: visitor, server, stop (this coordinator stopped)."}, []string{"by"}),
	}
	f(m.QueueTickets)
	f(m.QueueRefused)
	f(m.QueueForged)
	f(m.QueueSeated)
	f(m.QueueWait)
	f(m.QueueLeft)
	f(m.Relayed)
	f(m.RelaysEnded)
	f(m.BookingsApplied)
	f(m.BookingsLost)
	f(m.BookingsStale)
	f(m.ClusterQuorum)
	f(m.Stalls)
	f(m.BookingPropagation)
	f(m.HeartbeatsReceived)
	f(m.HeartbeatsDropped)
	f(m.Sessions)
	f(m.SessionLatency)
	f(m.WebSocketClients)
	f(m.Refused)
	f(m.Refusals)
	f(m.RefusedBy)
	f(m.Mails)
	f(m.MailsPending)
	f(m.StateChanges)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range []string{"placed", "none", "limited", "waiting"} {
		m.Sessions.WithLabelValues(s)
	}
	// Every label a dashboard or an alert reads exists from the start (a
	// rate over a series that appears later misses its first increase).
	for _, r := range []string{"sent", "failed", "abandoned"} {
		m.Mails.WithLabelValues(r)
	}
	for _, r := range dropReasons {
		m.HeartbeatsDropped.WithLabelValues(r)
	}
	for _, r := range []string{"busy", "blocked", "not-shared"} {
		m.Refusals.WithLabelValues(r)
	}
	m.turned = make(map[string]*atomic.Uint64, len(RefusalReasons))
	for _, r := range RefusalReasons {
		m.RefusedBy.WithLabelValues(r)
		m.turned[r] = new(atomic.Uint64)
	}
	for _, r := range []string{"closed", "max-wait", "no-server", "lapsed", "unreachable", "member-lost"} {
		m.QueueLeft.WithLabelValues(r)
	}
	for _, b := range []string{"visitor", "server", "stop"} {
		m.RelaysEnded.WithLabelValues(b)
	}
	return m
}

// dropReasons are schema's Drop* reasons, simgate_heartbeats_dropped_total's.
var dropReasons = []string{"schema", "subject", "unknown-server", "size", "closed-connection", "internal", "permission"}

// RefusalReasons are simgate_refusals_total's reasons.
var RefusalReasons = []string{"full", "drained", "down", "not-ready", "blocked", "line-full", "rate-limited", "gave-up", "waited-too-long"}

// TurnedAway counts a visitor turned away for reason (RefusalReasons).
func (m *Metrics) TurnedAway(reason string) {
	m.RefusedBy.WithLabelValues(reason).Inc()
	if n := m.turned[reason]; n != nil {
		n.Add(1)
	}
}

// TurnedAwayCounts is the visitors turned away since start, by reason
// (only the reasons that happened).
func (m *Metrics) TurnedAwayCounts() map[string]uint64 {
	out := map[string]uint64{}
	for r, n := range m.turned {
		if v := n.Load(); v > 0 {
			out[r] = v
		}
	}
	return out
}

// LeftLine counts a visitor who left the waiting room's line unseated, by
// why (waitroom.Reason); one who gave up, or waited queue.maxWait, is a
// refusal too.
func (m *Metrics) LeftLine(why string) {
	m.QueueLeft.WithLabelValues(why).Inc()
	switch why {
	case "closed":
		m.TurnedAway("gave-up")
	case "max-wait":
		m.TurnedAway("waited-too-long")
	}
}

// DroppedHeartbeat counts a heartbeat dropped for reason (schema's Drop*).
func (m *Metrics) DroppedHeartbeat(reason string) { m.HeartbeatsDropped.WithLabelValues(reason).Inc() }

// DeniedUnder is the embedded server's hook for a publish it refused: one
// under prefix (the heartbeats' subjects) counts as a heartbeat dropped
// for its permission.
func (m *Metrics) DeniedUnder(prefix string) func(subject string) {
	return func(subject string) {
		if strings.HasPrefix(subject, prefix) {
			m.DroppedHeartbeat("permission")
		}
	}
}

// Seated counts a visitor seated from the waiting room's line after wait.
func (m *Metrics) Seated(wait time.Duration) {
	m.QueueSeated.Inc()
	m.QueueWait.Observe(wait.Seconds())
}

// Handler serves the exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Reg, promhttp.HandlerOpts{})
}

// GaugeFunc registers a gauge computed at scrape time.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter read at scrape time, with constant labels.
func (m *Metrics) CounterFunc(name, help string, labels prometheus.Labels, f func() float64) {
	m.Reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f))
}

// Register adds a custom collector (the per-server gauges).
func (m *Metrics) Register(c prometheus.Collector) { m.Reg.MustRegister(c) }
