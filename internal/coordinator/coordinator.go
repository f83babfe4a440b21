// Package coordinator wires simgate's pieces into the coordinator daemon:
// the embedded NATS server, the heartbeat intake, the registry, the HTTP
// API, the notifier and, when configured, an in-process agent. It owns
// their lifetimes; each piece knows nothing of the others.
package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/agent"
	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/capacity"
	"github.com/simgate/simgate/internal/cluster"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/history"
	"github.com/simgate/simgate/internal/httpapi"
	"github.com/simgate/simgate/internal/login"
	"github.com/simgate/simgate/internal/metrics"
	"github.com/simgate/simgate/internal/notify"
	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/state"
	"github.com/simgate/simgate/internal/version"
	"github.com/simgate/simgate/internal/waitroom"
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
	pub     *schema.Publisher
	api     *httpapi.API
	line    *waitroom.Line // the waiting room; nil when queue.enabled is false
	lineKV  *state.LineKV  // its store in a cluster
	http    *http.Server
	httpLn  net.Listener
	serving sync.WaitGroup // http.Serve: a reload stops it last (Yield)
	stop    context.CancelFunc
	wg      sync.WaitGroup
	local   func() // stops the in-process agent; nil: none
	mail    *notify.Mailer
	stopped sync.Once
	// The cluster's shared state and placements.
	stateConn *nats.Conn
	state     *state.KV
	drains    *state.Drains
	bookings  *cluster.Bookings
	// What operators use over NATS.
	apiConn   *nats.Conn
	serversKV *state.ServersKV
	ready     *cluster.Readiness
	// The cluster, in one place: who leads (every side effect asks it
	// right before acting), and whether a majority is reached.
	lead    *cluster.Lead
	quorum  *cluster.Quorum
	peers   *cluster.Peers  // the members heard lately; nil alone
	runCtx  context.Context // the loops' lifetime
	members int             // the cluster's configured size (1 alone)
	subj    schema.Subjects // the subjects under nats.prefix
	// The farm's demand, recorded and planned with (demand.go).
	waits    history.Waits
	capacity *capacity.Service
	from     Inherited // what it took over from the process it replaces
}

// Inherited is what a coordinator takes over from the process it replaces
// (systemctl reload, a new binary): the HTTP listener, so that no visitor
// is refused meanwhile; Parent says that process still holds the NATS port
// and the state store, which it lets go of once this one is up to take
// them, and answers the HTTP port until this one is ready (Yield): this
// one serves HTTP only then.
type Inherited struct {
	HTTP   net.Listener
	Parent bool
}

// Start brings the coordinator up; it serves until Stop. It reads top to
// bottom as the wiring, one phase each (start.go): the HTTP port, the
// registry, the NATS server and its store, the cluster's state and mail,
// the heartbeat intake, the HTTP API, then the loops.
func Start(cfg config.Config, log *slog.Logger) (c *Coordinator, err error) {
	return StartFrom(cfg, log, Inherited{})
}

// StartFrom is Start for a coordinator that replaces another (from).
func StartFrom(cfg config.Config, log *slog.Logger, from Inherited) (c *Coordinator, err error) {
	c = &Coordinator{cfg: cfg, log: log, metrics: metrics.New(), subj: schema.Subjects{Prefix: cfg.NATS.Prefix}, from: from}
	c.ready = cluster.NewReadiness(time.Now())
	defer func() {
		if err != nil {
			c.Stop(context.Background())
		}
	}()
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	if err = c.listenHTTP(); err != nil {
		return c, err
	}
	c.newRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.runCtx = cancel, ctx
	guard := login.New(cfg.NATS.Users.Passwords()) // NATS logins and the monitor's HTTP Basic: failing on one waits on both
	known := guard.Keep(ctx, filepath.Join(cfg.LogDir, "session", "known-logins.json"), log)
	c.spawn(func(context.Context) { <-known })
	if err = c.startNATS(guard); err != nil {
		return c, err
	}
	if err = c.startState(); err != nil {
		return c, err
	}
	if err = c.startIntake(); err != nil {
		return c, err
	}
	if err = c.newLine(); err != nil {
		return c, err
	}
	c.newAPI(guard)
	if err = c.startLoops(ctx); err != nil {
		return c, err
	}
	log.Info("session server running", "port", c.cfg.Port, "servers", len(cfg.SimulationServers),
		"version", version.String(), "monitor", c.cfg.MonitorURL())
	if cfg.LocalAgent != "" { // over an in-process connection named after its entry
		nc, err := c.nats.Connect(cfg.LocalAgent)
		if err != nil {
			return c, fmt.Errorf("starting the in-process agent: %w", err)
		}
		c.local = agent.RunLocal(nc, cfg.LocalAgent, c.subj, cfg.Path != "", log)
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

// report is shown every report applied: the start may be ready now, and
// the mail policy watches loads.
func (c *Coordinator) report(rep alloc.Report) {
	c.ready.TryOpen()
	c.mail.Load(rep.Server, rep.Status, rep.Load, rep.Vector, rep.At)
}

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

// sweep judges silent servers every sweepEvery until ctx ends.
func (c *Coordinator) sweep(ctx context.Context) {
	c.reg.Watch(ctx, sweepEvery, c.quorum.Current, func(now time.Time, gap, clock time.Duration) {
		// Its agents' old connections close over the next seconds (pings
		// unanswered): failovers, not failures.
		c.intake.Stalled(now)
		c.metrics.Stalls.Inc()
		c.log.Warn("this coordinator stalled, or its clock jumped: every server gets one more timeout before it is judged silent",
			"gap", gap.Round(time.Millisecond), "clock_gap", clock.Round(time.Millisecond))
	})
}

// Stop shuts down gracefully: the in-process agent says it is leaving,
// HTTP stops accepting, WebSocket clients get a close frame, NATS drains.
func (c *Coordinator) Stop(ctx context.Context) { c.shutdown(ctx, false) }

// Yield hands over to the process that replaces this one (systemctl
// reload), which took a copy of the HTTP listener and waits for the NATS
// port and the state store. It lets go of those and of everything else
// at once, but its HTTP port answers on (httpapi's HandOver) until next
// is closed (the new process is ready) or handoverWait has passed; then
// it stops listening, its held visitors go to the new process, and it
// returns once the sessions it relays have ended, or ctx ends.
func (c *Coordinator) Yield(ctx context.Context, next <-chan struct{}) {
	if c.api == nil {
		c.shutdown(ctx, false)
		return
	}
	c.api.HandOver(c.httpLn.Addr()) // each answer closes its connection: the next goes to the new process
	c.shutdown(ctx, true)
	t := time.NewTimer(handoverWait)
	select {
	case <-next:
	case <-t.C:
		c.log.Warn("reload: the new process did not say it is ready; handing the waiting visitors to it anyway", "waited", handoverWait)
	case <-ctx.Done():
	}
	t.Stop()
	_ = c.httpLn.Close() // from now on, only the new process accepts
	c.api.Release()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = c.http.Shutdown(sctx)
	cancel()
	c.serving.Wait()
	c.log.Info("handed over to the new process; relayed sessions go on here until they end",
		"relayed", c.api.Relays(), "held_for_it", c.api.Held())
	c.api.WaitHeld(ctx.Done())
	c.api.WaitRelays(ctx)
}

// Opened is closed once the coordinator places visitors (ready).
func (c *Coordinator) Opened() <-chan struct{} { return c.ready.Opened() }

func (c *Coordinator) shutdown(ctx context.Context, keepRelays bool) {
	c.stopped.Do(func() {
		if c.local != nil {
			c.local()
		}
		if c.http != nil && !keepRelays { // a reload's HTTP stops last: Yield
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = c.http.Shutdown(sctx)
			cancel()
		}
		if c.httpLn != nil && !keepRelays {
			_ = c.httpLn.Close() // a start that failed before serving still frees its port
		}
		if c.api != nil {
			if keepRelays {
				c.api.KeepRelays()
			}
			c.api.Close(3 * time.Second)
		}
		if c.stop != nil {
			c.stop()
		}
		c.wg.Wait()
		if !keepRelays {
			c.serving.Wait()
		}
		c.closeOps()
		if c.intake != nil {
			c.intake.Close()
		}
		if c.pubConn != nil {
			_ = c.pubConn.Drain()
		}
		// The mails pending go to the state store before NATS stops.
		c.mail.Close()
		if c.stateConn != nil {
			c.stateConn.Close()
		}
		if c.nats != nil {
			c.nats.Shutdown()
		}
		if keepRelays {
			c.log.Info("reload: NATS and the state store let go of")
			return
		}
		c.log.Info("session server stopped")
	})
}

// onChange logs a state change, counts it and publishes it as an event.
func (c *Coordinator) onChange(ch alloc.Change) {
	c.log.Info("server state changed", "server", ch.Server, "from", ch.From.String(), "state", ch.To.String(), "reason", ch.Reason)
	c.metrics.StateChanges.WithLabelValues(ch.To.String()).Inc()
	c.mail.Change(ch)
	if c.pub != nil {
		if err := c.pub.Publish(schema.EventFor(ch)); err != nil {
			c.log.Warn("event not published", "server", ch.Server, "error", err)
		}
	}
}
