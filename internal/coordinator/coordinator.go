// Package coordinator wires simgate's pieces into the coordinator daemon:
// the embedded NATS server, the heartbeat intake, the registry, the HTTP
// API, the notifier and, when configured, an in-process agent. It owns
// their lifetimes; each piece knows nothing of the others.
package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/httpapi"
	"github.com/simgate/simgate/internal/logging"
	"github.com/simgate/simgate/internal/login"
	"github.com/simgate/simgate/internal/metrics"
	"github.com/simgate/simgate/internal/poll"
	"github.com/simgate/simgate/internal/state"
	"github.com/simgate/simgate/internal/version"
)

// sweepEvery is how often silent servers are looked for; small against the
// shortest timeout (3 × a 1 s interval).
const sweepEvery = 100 * time.Millisecond

// Coordinator is a running coordinator.
type Coordinator struct {
	cfg     config.Config
	log     *slog.Logger
	metrics *metrics.Metrics
	nats    *bus.Server
	reg     *alloc.Registry
	intake  *bus.Intake
	pubConn *nats.Conn
	pub     *bus.Publisher
	api     *httpapi.API
	http    *http.Server
	httpLn  net.Listener
	stop    context.CancelFunc
	wg      sync.WaitGroup
	local   *localAgent
	mail    *mailer
	stopped sync.Once
	// The cluster's shared state and placements.
	stateConn *nats.Conn
	state     *state.KV
	bookings  *bookings
	// What operators use over NATS.
	apiConn  *nats.Conn
	farm     *state.Farm
	farmErrs *logging.Throttle
	ready    readiness
	quorum   quorum
}

// Start brings the coordinator up; it serves until Stop.
func Start(cfg config.Config, log *slog.Logger) (c *Coordinator, err error) {
	c = &Coordinator{cfg: cfg, log: log, metrics: metrics.New()}
	c.ready.started, c.ready.silence = time.Now(), silenceTimeout(cfg.HeartbeatTimeout)
	defer func() {
		if err != nil {
			c.Stop(context.Background())
		}
	}()
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	// The HTTP port first: a busy port fails the start at once, naming it,
	// and port 0 becomes the port links and e-mails name.
	if c.httpLn, err = net.Listen("tcp", ":"+strconv.Itoa(cfg.Port)); err != nil {
		return c, fmt.Errorf("HTTP port %d (key \"port\", flag -port): %w", cfg.Port, err)
	}
	cfg.Port = c.httpLn.Addr().(*net.TCPAddr).Port
	c.cfg.Port = cfg.Port
	subj := bus.Subjects{Prefix: cfg.NATS.Prefix}
	c.reg = alloc.New(alloc.Options{
		Servers:   cfg.SimulationServers,
		Allowed:   cfg.NATS.BoundServers(),
		Threshold: cfg.LoadThreshold,
		Timeout:   cfg.HeartbeatTimeout,
		// A class behind one school address is spread like its students.
		MaxBookingsPerAddress: cfg.HTTP.MaxBookingsPerAddr,
		// No placement before the drains and a view of the farm are back.
		Gated:    true,
		OnChange: c.onChange,
		OnBook: func(server string) {
			if b := c.bookings; b != nil {
				b.placed(server)
			}
		},
	})
	// One password guard for NATS logins and the monitor's HTTP Basic: a
	// client failing on one waits on both.
	secrets := make([]string, len(cfg.NATS.Users))
	for i, u := range cfg.NATS.Users {
		secrets[i] = u.Password
	}
	guard := login.New(secrets)
	servers := cfg.SimulationServers
	if cfg.LocalAgent != "" {
		servers = append(slices.Clip(servers), cfg.LocalAgent)
	}
	so := bus.ServerOptions{
		Listen: cfg.NATS.Listen, Logger: log, Subjects: subj,
		Users: busUsers(cfg.NATS.Users), Servers: servers,
		TLSCert: cfg.NATS.TLSCert, TLSKey: cfg.NATS.TLSKey, Websocket: cfg.NATS.Websocket,
		StoreDir: filepath.Join(cfg.LogDir, "session", "nats"),
		Guard:    guard,
		Oversize: func() { c.metrics.HeartbeatsDropped.WithLabelValues(bus.DropSize).Inc() },
		Denied: func(subject string) {
			if strings.HasPrefix(subject, subj.Prefix+".load.") {
				c.metrics.HeartbeatsDropped.WithLabelValues(bus.DropPermission).Inc()
			}
		},
	}
	if cl := cfg.NATS.Cluster; cl != nil {
		so.Cluster = &bus.ClusterOptions{Name: cl.Name, Listen: cl.Listen, Routes: cl.Routes, Secret: cfg.NATS.RouteSecret()}
	}
	// A store the last start died on (or that the server refuses) is set
	// aside: never a reason not to run.
	store, err := state.Guard(so.StoreDir, log)
	if err != nil {
		return c, err
	}
	c.nats, err = bus.StartServer(so)
	if errors.Is(err, bus.ErrStore) {
		if err = store.Failed(err); err == nil {
			c.nats, err = bus.StartServer(so)
		}
	}
	store.Done()
	if err != nil {
		return c, err
	}
	log.Info("NATS server listening", "url", c.nats.ClientURL(), "websocket", c.nats.WebsocketURL(),
		"heartbeats", subj.LoadAll(), "events", subj.EventAll(), "users", len(cfg.NATS.Users), "tls", cfg.NATS.TLSCert != "",
		"name", c.nats.Name(), "cluster", c.nats.ClusterURL())
	if c.stateConn, err = c.nats.Connect("simgate-coordinator-state"); err != nil {
		return c, fmt.Errorf("connecting the state store: %w", err)
	}
	var bound *net.TCPAddr
	if u := c.nats.ClusterURL(); u != "" {
		bound, _ = net.ResolveTCPAddr("tcp", strings.TrimPrefix(u, "nats-route://"))
	}
	members := clusterSize(cfg.NATS.Cluster, bound)
	c.quorum.configured = members
	if c.state, err = state.New(c.stateConn, replicas(members), log.With("component", "state")); err != nil {
		return c, fmt.Errorf("state store: %w", err)
	}
	c.state.KeepManifest(state.ManifestPath(so.StoreDir))
	if c.farm, err = state.NewFarm(c.stateConn, replicas(members)); err != nil {
		return c, fmt.Errorf("farm bucket: %w", err)
	}
	c.farmErrs = logging.NewThrottle(time.Minute, 4)
	if cfg.NATS.Cluster != nil {
		log.Info("cluster member", "cluster", cfg.NATS.Cluster.Name, "members", members, "state_replicas", replicas(members),
			"routes", cfg.NATS.Cluster.Routes)
	}
	if c.mail, err = startMailer(cfg, log, c.metrics, c.state, c.nats.Leader); err != nil {
		return c, err
	}
	if c.pubConn, err = c.nats.Connect("simgate-coordinator-events"); err != nil {
		return c, fmt.Errorf("connecting the event publisher: %w", err)
	}
	c.pub = bus.NewPublisher(c.pubConn, subj)
	iopts := bus.IntakeOptions{
		Subjects: subj,
		Sink:     sink{reg: c.reg, onReport: c.report},
		Logger:   log,
		Dropped:  func(reason string) { c.metrics.HeartbeatsDropped.WithLabelValues(reason).Inc() },
		Received: c.metrics.HeartbeatsReceived.Inc,
	}
	if c.nats.Clustered() {
		iopts.Peers = c.nats.Peers
	}
	if c.intake, err = bus.StartIntake(c.nats, iopts); err != nil {
		return c, fmt.Errorf("subscribing to heartbeats: %w", err)
	}
	// Every placement is published (operators watch simgate.booking.>);
	// the members of a cluster apply each other's.
	b := &bookings{nc: c.pubConn, subj: subj, self: c.nats.Name(), reg: c.reg, metrics: c.metrics,
		interest: c.nats.Interest, clustered: c.nats.Clustered(), pending: map[string]int{}}
	if b.clustered {
		if err := b.subscribe(); err != nil {
			return c, fmt.Errorf("subscribing to the other members' bookings: %w", err)
		}
	}
	c.bookings = b
	c.registerGauges()

	// Rate 0 (unlimited) still tells visitors' addresses behind trusted proxies.
	limiter := httpapi.NewLimiter(cfg.HTTP.SessionRate, cfg.HTTP.SessionBurst, cfg.HTTP.TrustedProxies)
	c.api = httpapi.New(httpapi.Options{
		Registry:             c.reg,
		SSL:                  cfg.SSL,
		Logger:               log,
		Metrics:              c.metrics,
		Ready:                c.isReady,
		MaxWebSocketClients:  wsCap(cfg.HTTP.MaxWebSocketClients, log),
		MaxMonitorClients:    cfg.HTTP.MaxMonitorClients,
		MaxMonitorPerAddress: cfg.HTTP.MaxMonitorPerAddr,
		Limiter:              limiter,
		AllowedOrigins:       cfg.HTTP.AllowedOrigins,
		Version:              version.String(),
		Started:              c.reg.Started(),
		Member: func() httpapi.Member {
			seen := c.nats.Members()
			return httpapi.Member{Name: c.nats.Name(), Leader: c.nats.Leader(), Members: seen,
				Quorum: seen >= c.quorum.needed(), Needed: c.quorum.needed()}
		},
		Admin:  adminByPassword(cfg.NATS.Users, guard),
		Alerts: c.alerts,
		Drain:  c.drain,
	})
	limits := httpapi.DefaultLimits()
	limits.MaxConns = connCap()
	c.http = httpapi.NewServer(c.api, limits, log)
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	if err := c.startOps(ctx); err != nil {
		return c, err
	}
	if c.bookings.clustered {
		c.wg.Add(2)
		go func() { defer c.wg.Done(); c.bookings.run(ctx) }()
		go func() { defer c.wg.Done(); c.watchQuorum(ctx) }()
	} else {
		c.metrics.ClusterQuorum.Set(1)
	}
	// Servers without an agent are polled as the original polled them;
	// the in-process agent's own server never needs it.
	polled := slices.DeleteFunc(slices.Clone(cfg.SimulationServers), func(s string) bool { return s == cfg.LocalAgent })
	if len(polled) > 0 {
		p := poll.New(poll.Options{Servers: polled, SSL: cfg.SSL, Registry: c.reg, OnReport: c.report,
			Logger: log.With("component", "poll")})
		c.wg.Add(1)
		go func() { defer c.wg.Done(); p.Run(ctx) }()
	}
	c.wg.Add(5)
	go func() { defer c.wg.Done(); c.awaitReady(ctx) }()
	go func() { defer c.wg.Done(); c.mail.check(ctx) }()
	go func() { defer c.wg.Done(); c.mail.run(ctx, c.reg) }()
	go func() {
		defer c.wg.Done()
		if err := c.http.Serve(c.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", "error", err)
		}
	}()
	go func() { defer c.wg.Done(); c.sweep(ctx) }()
	log.Info("session server running", "port", cfg.Port, "servers", len(cfg.SimulationServers),
		"version", version.String(), "monitor", cfg.MonitorURL())
	if cfg.LocalAgent != "" {
		if c.local, err = startLocalAgent(c, cfg.LocalAgent); err != nil {
			return c, fmt.Errorf("starting the in-process agent: %w", err)
		}
	}
	return c, nil
}

// busUsers converts the configured NATS users for the embedded server.
func busUsers(users []config.NATSUser) []bus.User {
	out := make([]bus.User, len(users))
	for i, u := range users {
		out[i] = bus.User{Name: u.User, Password: u.Password, Token: u.Token, Nkey: u.Nkey, Role: u.Role, Servers: u.Servers}
	}
	return out
}

// alerts is what an operator must know now (summary.alerts, the monitor).
func (c *Coordinator) alerts() []string {
	out := c.mail.alerts()
	if q := c.quorumAlert(); q != "" {
		out = append(out, q)
	}
	return out
}

// report is shown every report applied: the start may be ready now, and
// the mail policy watches loads.
func (c *Coordinator) report(rep alloc.Report) {
	c.tryOpen()
	c.mail.report(rep)
}

// HTTPAddr is the address the HTTP API listens on.
func (c *Coordinator) HTTPAddr() string { return c.httpLn.Addr().String() }

// Listening is what a running coordinator bound: what -listen-file writes,
// for supervisors and tests that start it on port 0.
type Listening struct {
	HTTPPort int    `json:"httpPort"`
	NATSURL  string `json:"natsURL"` // the URL agents on this machine connect to
	NATSPort int    `json:"natsPort"`
	// NATSWebsocketURL is NATS's WebSocket listener (nats.websocket); "" when off.
	NATSWebsocketURL string `json:"natsWebsocketURL,omitempty"`
	// ClusterURL is where the other members' routes connect (nats.cluster); "" when off.
	ClusterURL string `json:"clusterURL,omitempty"`
}

// Listening reports the ports the coordinator holds.
func (c *Coordinator) Listening() Listening {
	return Listening{
		HTTPPort: c.cfg.Port,
		NATSURL:  c.nats.ClientURL(),
		NATSPort: c.nats.Addr().(*net.TCPAddr).Port,

		NATSWebsocketURL: c.nats.WebsocketURL(),
		ClusterURL:       c.nats.ClusterURL(),
	}
}

// WriteListenFile writes Listening as JSON to path, atomically: a reader
// sees no file or the whole file.
func (c *Coordinator) WriteListenFile(path string) error {
	data, err := json.Marshal(c.Listening())
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the listen file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the listen file: %w", err)
	}
	return nil
}

// NATSURL is the URL agents connect to.
func (c *Coordinator) NATSURL() string { return c.nats.ClientURL() }

// Registry gives tests and wiring read access to the registry.
func (c *Coordinator) Registry() *alloc.Registry { return c.reg }

func (c *Coordinator) sweep(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if gap, clock, ok := stalled(last, now); ok {
				// The heartbeats that came meanwhile wait in the sockets:
				// give them time to be read before anyone is judged silent.
				c.reg.Grace(now)
				c.metrics.Stalls.Inc()
				c.log.Warn("this coordinator stalled, or its clock jumped: every server gets one more timeout before it is judged silent",
					"gap", gap.Round(time.Millisecond), "clock_gap", clock.Round(time.Millisecond))
			}
			last = now
			c.reg.Sweep(now)
		}
	}
}

// stallGap is a gap between two sweeps (100 ms apart) that only a stalled
// process (a machine that froze, SIGSTOP, a VM paused) or a clock that
// jumped explains.
const stallGap = alloc.StallGap

// stalled says whether the sweep at now, after the one at last, follows a
// stall (gap, on the monotonic clock) or a jump of the wall clock, which
// heartbeats' times and the silence deadlines are on (clock, its gap).
func stalled(last, now time.Time) (gap, clock time.Duration, ok bool) {
	if last.IsZero() {
		return 0, 0, false
	}
	gap, clock = now.Sub(last), now.Round(0).Sub(last.Round(0))
	return gap, clock, gap > stallGap || clock > stallGap || clock < -time.Second || (clock-gap).Abs() > time.Second
}

// Stop shuts down gracefully: the in-process agent says it is leaving,
// HTTP stops accepting, WebSocket clients get a close frame, NATS drains.
func (c *Coordinator) Stop(ctx context.Context) {
	c.stopped.Do(func() {
		if c.local != nil {
			c.local.stop()
		}
		if c.http != nil {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = c.http.Shutdown(sctx)
			cancel()
		}
		if c.httpLn != nil {
			_ = c.httpLn.Close() // a start that failed before serving still frees its port
		}
		if c.api != nil {
			c.api.Close(3 * time.Second)
		}
		if c.stop != nil {
			c.stop()
		}
		c.wg.Wait()
		c.closeOps()
		if c.intake != nil {
			c.intake.Close()
		}
		if c.pubConn != nil {
			_ = c.pubConn.Drain()
		}
		// The mails pending go to the state store before NATS stops.
		c.mail.close()
		if c.stateConn != nil {
			c.stateConn.Close()
		}
		if c.nats != nil {
			c.nats.Shutdown()
		}
		c.log.Info("session server stopped")
	})
}

// onChange logs a state change, counts it and publishes it as an event.
func (c *Coordinator) onChange(ch alloc.Change) {
	c.log.Info("server state changed", "server", ch.Server, "from", ch.From.String(), "state", ch.To.String(), "reason", ch.Reason)
	c.metrics.StateChanges.WithLabelValues(ch.To.String()).Inc()
	c.mail.change(ch)
	ev := bus.Event{Server: ch.Server, Kind: eventKind(ch), From: ch.From.String(), To: ch.To.String(),
		Reason: ch.Reason, Time: ch.At.UTC().Format(time.RFC3339Nano)}
	if ch.Reported {
		load := ch.Load
		ev.Load, ev.CPU, ev.Memory, ev.Swap = &load, ch.Vector.CPU, ch.Vector.Memory, ch.Vector.Swap
		ev.GPU, ev.GPUMemory, ev.VRAM = ch.Vector.GPU, ch.Vector.GPUMemory, ch.Vector.VRAM
	}
	if c.pub != nil {
		if err := c.pub.Publish(ev); err != nil {
			c.log.Warn("event not published", "server", ch.Server, "error", err)
		}
	}
}

// eventKind names a change as PROTOCOL.md §2's event kinds do.
func eventKind(ch alloc.Change) string {
	switch ch.To {
	case alloc.Down, alloc.Unknown:
		return bus.EventDown
	case alloc.Full:
		return bus.EventFull
	case alloc.Draining:
		return bus.EventDraining
	}
	if ch.From == alloc.Full {
		return bus.EventAvailable
	}
	return bus.EventUp
}
