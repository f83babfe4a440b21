// Package httpapi serves the coordinator's client endpoints (PROTOCOL.md §1):
// /session, /, /load, /monitor over HTTP and WebSocket, and /api/servers,
// /metrics, /healthz, /readyz. It reads the registry through a small
// interface and knows nothing of NATS or e-mail.
package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/logging"
	"github.com/simgate/simgate/internal/metrics"
)

// Registry is what the handlers need of the server registry.
type Registry interface {
	Place(v alloc.Visitor) (name string, ok bool)
	Admit(v alloc.Visitor, wait bool) (name string, out alloc.Outcome)
	Waitable(url string) bool
	Peek(url string) (name string, ok bool)
	Why(url string) alloc.Refusal
	BusyCause() string
	Placed(t alloc.Tier) uint64
	Available() bool
	AvailabilityChanged() <-chan struct{}
	MeanLoad() (float64, bool)
	Snapshot() []alloc.View
	Counts() (handedOut, noServer uint64)
	Threshold() float64
}

// Options configures the API.
type Options struct {
	Registry Registry
	SSL      bool // hand out wss:// rather than ws://
	Logger   *slog.Logger
	Metrics  *metrics.Metrics
	// LogBudget, when set, bounds the refused WebSocket clients' lines
	// together with the other lines clients can cause (bus.Server's).
	LogBudget *logging.Budget
	// Ready reports whether the coordinator is ready (PROTOCOL §1 /readyz:
	// NATS up, its drains loaded, every server heard from or one silence
	// timeout passed), and why not.
	Ready func() (ok bool, why string)
	// AwaitReady, when set, waits until the coordinator places visitors or
	// ctx ends, and says which: a visitor that reaches a coordinator not
	// ready yet is held up to ReadyHold (default DefaultReadyHold), then
	// answered.
	AwaitReady func(ctx context.Context) bool
	ReadyHold  time.Duration
	// MaxWebSocketClients caps concurrent WebSocket clients.
	MaxWebSocketClients int
	// MaxMonitorClients caps live /monitor pages (default 1000), and
	// MaxMonitorPerAddress those of one client address (default 10).
	MaxMonitorClients, MaxMonitorPerAddress int
	// Limiter, when set, limits /session per client address and tells
	// client addresses behind trusted proxies.
	Limiter *Limiter
	// AllowedOrigins lists the WebSocket origins accepted; empty: all.
	AllowedOrigins []string
	// Version and Started are shown on the monitor page.
	Version string
	Started time.Time
	// PingInterval is how often idle WebSocket clients are pinged (default 30 s).
	PingInterval time.Duration
	// Member, when set, says where this coordinator stands in its cluster.
	Member func() Member
	// Alerts, when set, says what an operator must know now (summary.alerts
	// of /api/servers, a banner on the monitor page).
	Alerts func() []string
	// Admin, when set, names the admin (a NATS user of role admin) whose
	// user name and password these are, "" for none: /monitor?admin shows
	// the drain buttons to an admin, and only an admin's drain is taken.
	Admin func(addr, user, password string) string
	// Drain drains (on) or undrains server on the word of by; an error
	// that is ErrUnknownServer names no configured server (404), any other
	// says the drain could not be kept now (503).
	Drain func(server, by string, on bool) error
	// Line, when set, is the waiting room (PROTOCOL §1.2): a visitor no
	// server would take now, while one that would is up, is given a place
	// in it. Server, Port and PortRewrite write its URLs.
	Line        Line
	Server      string
	Port        int
	PortRewrite bool
	// Capacity, when set, is the capacity document (/api/capacity).
	Capacity func() []byte
}

// ErrUnknownServer is Options.Drain's error for a server not configured.
var ErrUnknownServer = errors.New("no such server")

// API is the coordinator's HTTP handler.
type API struct {
	o        Options
	mux      *http.ServeMux
	scheme   []byte
	upgrader websocket.Upgrader
	closing  chan struct{}
	// wsMu orders admitting WebSocket clients (wsWG.Add) before Close's
	// wait: a WaitGroup must not grow from zero while it is waited on.
	wsMu    sync.Mutex
	closed  bool
	loops   sync.WaitGroup // the history and feed goroutines
	wsWG    sync.WaitGroup
	wsCount atomic.Int64
	// keepRelays: Close leaves the waiting room's relayed sessions running
	// (a reload hands over to a new process); relays counts them.
	keepRelays atomic.Bool
	handing    atomic.Pointer[handover] // a reload's: nil until HandOver
	relays     sync.WaitGroup
	relayCount atomic.Int64
	history    *history
	feed       *feed
	monitors   monitorSlots
	refusals   *logging.Throttle
	// The /session counters, looked up once: the hot path only adds.
	placed, none, limited, waiting *counted
}

// counted is a /metrics counter whose count the demand history reads
// (Demand) without a scrape.
type counted struct {
	prometheus.Counter
	n atomic.Uint64
}

func newCounted(c prometheus.Counter) *counted { return &counted{Counter: c} }

// Inc adds one.
func (c *counted) Inc() {
	c.Counter.Inc()
	c.n.Add(1)
}

// Demand is what /session (and the farm's NATS service) counted since
// start: every visitor who asked for a session (placed, sent to the
// waiting room, turned away, or over its rate), and those placed at once.
func (a *API) Demand() (visitors, placed uint64) {
	placed = a.placed.n.Load()
	return placed + a.none.n.Load() + a.waiting.n.Load() + a.limited.n.Load(), placed
}

// Response pieces shared by every answer; header values are never mutated.
var (
	corsOrigin  = []string{"*"}
	corsHeaders = []string{"x-requested-with"}
	corsMethods = []string{"POST, GET, OPTIONS"}
	textPlain   = []string{"text/plain; charset=utf-8"}
	noServer    = []byte("Error: no simulation server available at the moment.")
	// PROTOCOL §1.1: the visitor learns why no server will ever run a world.
	blockedEverywhere = []byte("Error: this project is blocked on every simulation server.")
	// urlTooLong answers a ?url= over MaxWorldURL: no world's URL is that
	// long, and the holds keep each URL asked with.
	urlTooLong = []byte("Error: the world's URL is too long.")
	notShared  = []byte("Error: no simulation server runs this project: none is dedicated to its repository, and none that shares its idle time takes it.")
	one, zero  = []byte("1"), []byte("0")
)

// New builds the API.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.MaxWebSocketClients <= 0 {
		o.MaxWebSocketClients = 20000
	}
	if o.MaxMonitorClients <= 0 {
		o.MaxMonitorClients = 1000
	}
	if o.MaxMonitorPerAddress <= 0 {
		o.MaxMonitorPerAddress = 10
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.Ready == nil {
		o.Ready = func() (bool, string) { return true, "" }
	}
	if o.ReadyHold <= 0 {
		o.ReadyHold = DefaultReadyHold
	}
	a := &API{o: o, mux: http.NewServeMux(), closing: make(chan struct{}), history: newHistory(),
		placed:  newCounted(o.Metrics.Sessions.WithLabelValues("placed")),
		none:    newCounted(o.Metrics.Sessions.WithLabelValues("none")),
		limited: newCounted(o.Metrics.Sessions.WithLabelValues("limited")),
		waiting: newCounted(o.Metrics.Sessions.WithLabelValues("waiting"))}
	a.scheme = []byte("wss://")
	if !o.SSL {
		a.scheme = []byte("ws://")
	}
	a.upgrader = websocket.Upgrader{
		ReadBufferSize:   512,
		WriteBufferSize:  1024,
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      a.checkOrigin,
		// Browsers ask for permessage-deflate; the monitor's document is
		// compressed once per version for all of them (PreparedMessage).
		EnableCompression: true,
	}
	a.feed = newFeed(a)
	a.monitors = monitorSlots{max: o.MaxMonitorClients, perAddr: o.MaxMonitorPerAddress, by: map[string]int{}}
	a.refusals = logging.NewThrottle(time.Minute, logging.ClientKeys).Within(o.LogBudget)
	a.loops.Add(2) // waited for by Close
	go func() { defer a.loops.Done(); a.runHistory() }()
	go func() { defer a.loops.Done(); a.feed.run(a.monitors.live) }()
	a.mux.HandleFunc("/session", a.session)
	a.mux.HandleFunc("/{$}", a.availability)
	a.mux.HandleFunc("/load", a.load)
	a.mux.HandleFunc("/monitor", a.monitor)
	a.mux.HandleFunc("/api/servers", a.servers)
	a.mux.HandleFunc("/api/capacity", a.capacity)
	a.mux.Handle("/metrics", o.Metrics.Handler())
	a.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { writeText(w, []byte("ok")) })
	a.mux.HandleFunc("/readyz", a.readyz)
	a.mux.HandleFunc("/wait/{ticket}", a.wait)
	a.mux.HandleFunc("/wait/{ticket}/client", a.wait)
	o.Metrics.GaugeFunc("simgate_sessions_handed_out", "Sessions handed out since start.", func() float64 {
		h, _ := o.Registry.Counts()
		return float64(h)
	})
	o.Metrics.GaugeFunc("simgate_queue_waiting", "Visitors waiting in the waiting room's line (tickets not opened yet included).", func() float64 {
		if o.Line == nil {
			return 0
		}
		return float64(o.Line.Len())
	})
	o.Metrics.GaugeFunc("simgate_queue_oldest_wait_seconds", "How long the visitor first in line has waited.", func() float64 {
		if o.Line == nil {
			return 0
		}
		_, oldest := o.Line.Stats()
		return oldest.Seconds()
	})
	for _, t := range []alloc.Tier{alloc.TierAny, alloc.TierDedicated, alloc.TierShared} {
		o.Metrics.CounterFunc("simgate_placements_total", "Sessions placed, by tier (PROTOCOL §1.1): any (no repository URL or no policy), dedicated, shared idle time.",
			prometheus.Labels{"tier": t.String()}, func() float64 { return float64(o.Registry.Placed(t)) })
	}
	return a
}

// ServeHTTP adds the original's CORS headers to every answer, answers
// OPTIONS with 204, and refuses methods the endpoints do not serve.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ho := a.handing.Load(); ho != nil {
		a.serveHandingOver(ho, w, r) // a reload: here or by the new process
		return
	}
	h := w.Header()
	setCORS(h)
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if r.URL.Path == "/monitor" {
			a.monitorAction(w, r) // an admin's drain button
			return
		}
		fallthrough
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/session" {
		a.session(w, r) // the hot path skips the mux's pattern matching
		return
	}
	a.mux.ServeHTTP(w, r)
}

// setCORS sets the original's CORS headers.
func setCORS(h http.Header) {
	h["Access-Control-Allow-Origin"] = corsOrigin
	h["Access-Control-Allow-Headers"] = corsHeaders
	h["Access-Control-Allow-Methods"] = corsMethods
}

func writeText(w http.ResponseWriter, body []byte) {
	w.Header()["Content-Type"] = textPlain
	_, _ = w.Write(body)
}

// session answers the URL of the least-loaded available server. This is the
// hot path: it reads a ready choice from the registry and allocates nothing.
func (a *API) session(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		a.sessionWS(w, r)
		return
	}
	start := time.Now()
	v, limited := a.visitor(r)
	if limited {
		a.limited.Inc()
		a.o.Metrics.TurnedAway("rate-limited")
		w.Header()["Content-Type"] = textPlain
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(limitedBody)
		return
	}
	if len(v.URL) > MaxWorldURL {
		writeText(w, urlTooLong)
		return
	}
	var name string
	var ok bool
	out := alloc.Placed
	if r.Method == http.MethodHead {
		name, ok = a.o.Registry.Peek(v.URL) // the headers GET would send; HEAD books nothing
	} else {
		name, out = a.place(r.Context(), v)
		ok = out == alloc.Placed
	}
	w.Header()["Content-Type"] = textPlain
	if !ok {
		if r.Method == http.MethodHead {
			body, _ := a.refusal(v.URL, false)
			_, _ = w.Write(body)
		} else {
			_, _ = w.Write(a.unplaced(r, v, out))
		}
	} else {
		_, _ = w.Write(a.scheme)
		_, _ = io.WriteString(w, name)
		if r.Method != http.MethodHead {
			a.placed.Inc()
		}
	}
	a.o.Metrics.SessionLatency.Observe(time.Since(start).Seconds())
}

// DefaultReadyHold is how long /session holds a visitor while the
// coordinator is not ready yet (PROTOCOL §1 /readyz): a balancer sends
// visitors to a member it has not checked since the member restarted,
// which is ready about a heartbeat later. Under the 5 s timeout of the
// README's balancer.
const DefaultReadyHold = 4 * time.Second

// place places v; while the coordinator is not ready, it waits for it, up
// to Options.ReadyHold, then places or answers as a busy farm. Only a refusal pays
// for the check: a placement is the hot path. With a waiting room, the
// visitors in line are seated first, and an address at its cap is told so
// (its visitor waits in line) rather than answered from its bookings.
func (a *API) place(ctx context.Context, v alloc.Visitor) (string, alloc.Outcome) {
	wait := a.o.Line != nil
	if wait && a.o.Line.Len() > 0 {
		a.o.Line.Pass(false) // first come, first served: those in line before v
		if a.o.Line.Blocks() {
			return "", alloc.NoRoom // a member that does not seat: v goes to the back
		}
	}
	name, out := a.o.Registry.Admit(v, wait)
	if out != alloc.NotReady || a.o.AwaitReady == nil {
		return name, out
	}
	ctx, cancel := context.WithTimeout(ctx, a.o.ReadyHold)
	defer cancel()
	if !a.o.AwaitReady(ctx) {
		return name, out
	}
	return a.o.Registry.Admit(v, wait)
}

// unplaced is /session's answer to a visitor out could not place, counted:
// a place in the waiting room when it may wait (PROTOCOL §1.2), else the
// original's sentence or why no server ever would; an address at its cap
// that gets no ticket is answered from the bookings it holds.
func (a *API) unplaced(r *http.Request, v alloc.Visitor, out alloc.Outcome) []byte {
	body, ok, lineFull := a.ticket(r, v, out)
	if ok {
		a.waiting.Inc()
		return body
	}
	if out == alloc.AtCap {
		if name, ok := a.o.Registry.Place(v); ok {
			a.placed.Inc()
			return a.serverURL(name)
		}
	}
	a.none.Inc()
	body, why := a.refusal(v.URL, true)
	if lineFull {
		a.o.Metrics.TurnedAway("line-full")
	} else {
		a.turnedAway(why, out)
	}
	return body
}

// client is the request's client: key is what the rate limiter counts ("" for
// a local tool behind no proxy, which is exempt), addr the address it is
// known by as a visitor (the peer's, for such a tool).
func (a *API) client(r *http.Request) (key, addr string) {
	if a.o.Limiter != nil {
		key = a.o.Limiter.ClientAddr(r)
	}
	if addr = key; addr == "" {
		addr = peerHost(r)
	}
	return key, addr
}

// visitor is who asks for a session: the client (behind trusted proxies,
// the one they forward) and the world asked for, "?url=" as the Webots
// client writes it (not encoded; PROTOCOL §1.1); limited, when the request
// is over the client's /session rate. The address is worked out once for both.
func (a *API) visitor(r *http.Request) (v alloc.Visitor, limited bool) {
	key, addr := a.client(r)
	limited = a.o.Limiter != nil && !a.o.Limiter.AllowAddr(key)
	return alloc.Visitor{Addr: addr, URL: worldURL(r.URL.RawQuery)}, limited
}

// worldURL is everything after "url=" in a raw query, as the Webots client
// writes it (not encoded); one that was encoded anyway is decoded. "" without one.
func worldURL(rawQuery string) string {
	v, ok := strings.CutPrefix(rawQuery, "url=")
	if !ok {
		if _, v, ok = strings.Cut(rawQuery, "&url="); !ok {
			return ""
		}
	}
	// The Webots client writes it as is; anything else that is encoded
	// (https%3A…, %20https…, http%3A…) is decoded, so that placement reads
	// what a simulation server would.
	if strings.IndexByte(v, '%') >= 0 && !hasWebScheme(v) {
		if d, err := url.QueryUnescape(v); err == nil {
			return d
		}
	}
	return v
}

// serverURL is the answer naming server: the scheme, then the entry as
// configured (PROTOCOL §1).
func (a *API) serverURL(server string) []byte {
	return append(append([]byte(nil), a.scheme...), server...)
}

// hasWebScheme reports whether v begins with http:// or https://, in any case.
func hasWebScheme(v string) bool {
	n := min(len(v), 8)
	return strings.EqualFold(v[:min(n, 7)], "http://") || strings.EqualFold(v[:n], "https://")
}

// turnedAway counts a visitor no server took (simgate_refusals_total):
// why is the world's refusal, out why the registry placed nothing.
func (a *API) turnedAway(why alloc.Refusal, out alloc.Outcome) {
	switch {
	case why != alloc.Busy:
		a.o.Metrics.TurnedAway("blocked")
	case out == alloc.NotReady:
		a.o.Metrics.TurnedAway("not-ready")
	default:
		a.o.Metrics.TurnedAway(a.o.Registry.BusyCause())
	}
}

// refusal is the answer when no server takes url, and why: the original's
// sentence while the farm is merely busy, a specific one when none ever
// would; counted by reason in /metrics when count is set (not for HEAD).
func (a *API) refusal(url string, count bool) ([]byte, alloc.Refusal) {
	why := a.o.Registry.Why(url)
	if count {
		a.o.Metrics.Refusals.WithLabelValues(why.String()).Inc()
	}
	switch why {
	case alloc.Blocked:
		return blockedEverywhere, why
	case alloc.NotShared:
		return notShared, why
	}
	return noServer, why
}

// ServersJSON is the /api/servers document, at most one refresh old.
func (a *API) ServersJSON() []byte {
	doc, _ := a.feed.current()
	return doc
}

// MaxWorldURL is the longest ?url= placed (bytes); GitHub's own limit for
// a blob URL is well under it.
const MaxWorldURL = 2048

// SessionFor places a session for v and returns /session's answer (the
// farm's NATS service places with it): v.Addr is counted against the same
// rate as a client address, and holds its bookings as one.
func (a *API) SessionFor(v alloc.Visitor) []byte {
	if a.o.Limiter != nil && !a.o.Limiter.AllowAddr(v.Addr) {
		a.limited.Inc()
		a.o.Metrics.TurnedAway("rate-limited")
		return limitedBody
	}
	// A NATS request is not held (its caller has its own timeout) and
	// gets no waiting room: it has no socket to wait on.
	if len(v.URL) > MaxWorldURL {
		return urlTooLong
	}
	name, out := a.o.Registry.Admit(v, false)
	if out != alloc.Placed {
		a.none.Inc()
		body, why := a.refusal(v.URL, true)
		a.turnedAway(why, out)
		return body
	}
	a.placed.Inc()
	return a.serverURL(name)
}

// sessionAnswer is the body of /session for the WebSocket form, held as
// /session is while the coordinator is not ready.
func (a *API) sessionAnswer(r *http.Request, v alloc.Visitor) []byte {
	if len(v.URL) > MaxWorldURL {
		return urlTooLong
	}
	name, out := a.place(r.Context(), v)
	if out != alloc.Placed {
		return a.unplaced(r, v, out)
	}
	a.placed.Inc()
	return a.serverURL(name)
}

func (a *API) availability(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		a.availabilityWS(w, r)
		return
	}
	if a.o.Registry.Available() {
		writeText(w, one)
	} else {
		writeText(w, zero)
	}
}

func (a *API) load(w http.ResponseWriter, r *http.Request) {
	mean, ok := a.o.Registry.MeanLoad()
	if !ok {
		mean = -1
	}
	writeText(w, strconv.AppendFloat(nil, mean, 'f', -1, 64))
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if ok, why := a.o.Ready(); !ok {
		w.Header()["Content-Type"] = textPlain
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + why))
		return
	}
	writeText(w, []byte("ok"))
}
