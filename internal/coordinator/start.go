package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/cluster"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/httpapi"
	"github.com/simgate/simgate/internal/login"
	"github.com/simgate/simgate/internal/poll"
	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/state"
	"github.com/simgate/simgate/internal/version"
	"github.com/simgate/simgate/internal/waitroom"
)

// The phases of Start, in order.

// handoverWait is how long a coordinator that replaces another (systemctl
// reload) waits for it to let go of the NATS port and the state store.
const handoverWait = 30 * time.Second

// listenHTTP takes the HTTP port first: a busy port fails the start at
// once, naming it, and port 0 becomes the port links and e-mails name.
// A listener handed over by the process this one replaces is used as it is.
func (c *Coordinator) listenHTTP() (err error) {
	if c.from.HTTP != nil {
		c.httpLn = c.from.HTTP
	} else if c.httpLn, err = net.Listen("tcp", ":"+strconv.Itoa(c.cfg.Port)); err != nil {
		return fmt.Errorf("HTTP port %d (key \"port\", flag -port): %w", c.cfg.Port, err)
	}
	c.cfg.Port = c.httpLn.Addr().(*net.TCPAddr).Port
	return nil
}

// newRegistry builds the registry of servers, closed to placement until
// the coordinator is ready.
func (c *Coordinator) newRegistry() {
	cfg := c.cfg
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
				b.Placed(server)
			}
		},
	})
}

// storeDir is where the NATS server keeps its state store and name.
func (c *Coordinator) storeDir() string { return filepath.Join(c.cfg.LogDir, "session", "nats") }

// startNATS starts the embedded NATS server on its store; a store the last
// start died on (or that the server refuses) is set aside: never a reason
// not to run.
func (c *Coordinator) startNATS(guard *login.Guard) error {
	cfg, subj := c.cfg, c.subj
	servers := cfg.SimulationServers
	if cfg.LocalAgent != "" {
		servers = append(slices.Clip(servers), cfg.LocalAgent)
	}
	so := bus.ServerOptions{
		Listen: cfg.NATS.Listen, Logger: c.log, Subjects: subj,
		Users: busUsers(cfg.NATS.Users), Servers: servers,
		TLSCert: cfg.NATS.TLSCert, TLSKey: cfg.NATS.TLSKey, Websocket: cfg.NATS.Websocket, TrustedProxies: cfg.HTTP.TrustedProxies,
		StoreDir: c.storeDir(),
		Guard:    guard,
		Oversize: func() { c.metrics.DroppedHeartbeat(schema.DropSize) },
		Denied:   c.metrics.DeniedUnder(subj.Prefix + ".load."),
	}
	if cl := cfg.NATS.Cluster; cl != nil {
		so.Cluster = &bus.ClusterOptions{Name: cl.Name, Listen: cl.Listen, Routes: cl.Routes, Secret: cfg.NATS.RouteSecret()}
	}
	store, err := state.Guard(so.StoreDir, cfg.Clustered(), c.log)
	if err != nil {
		return err
	}
	if c.from.Parent {
		bus.AwaitPorts(so, handoverWait, c.log)
	}
	c.nats, err = bus.StartServer(so)
	if errors.Is(err, bus.ErrStore) {
		if err = store.Failed(err); err == nil {
			c.nats, err = bus.StartServer(so)
		}
	}
	store.Done()
	if err != nil {
		return err
	}
	c.log.Info("NATS server listening", "url", c.nats.ClientURL(), "websocket", c.nats.WebsocketURL(),
		"heartbeats", subj.LoadAll(), "events", subj.EventAll(), "users", len(cfg.NATS.Users), "tls", cfg.NATS.TLSCert != "",
		"name", c.nats.Name(), "cluster", c.nats.ClusterURL())
	return nil
}

// startState opens the cluster's shared state (the state and farm
// buckets, as many copies as members allow) and the mailer over it.
func (c *Coordinator) startState() (err error) {
	cfg := c.cfg
	if c.stateConn, err = c.nats.Connect("simgate-coordinator-state"); err != nil {
		return fmt.Errorf("connecting the state store: %w", err)
	}
	var bound *net.TCPAddr
	if u := c.nats.ClusterURL(); u != "" {
		bound, _ = net.ResolveTCPAddr("tcp", strings.TrimPrefix(u, "nats-route://"))
	}
	members := 1
	reached := c.nats.Members
	if cl := cfg.NATS.Cluster; cl != nil {
		members = cluster.Size(cl.Listen, cl.Routes, bound)
		if c.peers, err = cluster.NewPeers(c.stateConn, c.subj.MemberBeats(), c.nats.Name(), c.nats.Leader); err != nil {
			return fmt.Errorf("listening for the other members: %w", err)
		}
		// Routed to, and heard lately: a route outlives a cut or a pause.
		reached = func() int { return min(c.nats.Members(), c.peers.Reached()) }
	}
	c.members = members
	c.quorum = cluster.NewQuorum(members, reached, c.ready.Started(), c.log, c.metrics.ClusterQuorum)
	c.lead = cluster.NewLead(nil, c.quorum, nil)
	if cfg.Clustered() {
		c.lead = cluster.NewLead(c.nats.Leader, c.quorum, c.peers.RivalLeads)
		c.quorum.OnChange(c.ready.QuorumLost, c.ready.QuorumBack)
	}
	if c.state, err = state.New(c.stateConn, cluster.Replicas(members), c.log.With("component", "state")); err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	c.state.KeepManifest(state.ManifestPath(c.storeDir()))
	tell := c.stateConn // the members', of the drains; a lone coordinator tells no one
	if !cfg.Clustered() {
		tell = nil
	}
	if c.drains, err = state.NewDrains(c.state, tell, c.subj, c.reg, c.quorum.HeldFor, c.log); err != nil {
		return fmt.Errorf("listening for the other members' drains: %w", err)
	}
	c.ready.Follow(cluster.ReadinessOptions{Registry: c.reg, Drains: c.drains, Node: c.nats, Quorum: c.quorum,
		Up: func() bool { return c.nats.Ready() && c.pubConn.IsConnected() }, Clustered: cfg.Clustered(),
		Configured: members, HeartbeatTimeout: cfg.HeartbeatTimeout, Logger: c.log,
		Go: c.spawn})
	if c.serversKV, err = state.NewServersKV(c.stateConn, cluster.Replicas(members)); err != nil {
		return fmt.Errorf("farm bucket: %w", err)
	}
	if cfg.Clustered() {
		c.log.Info("cluster member", "cluster", cfg.NATS.Cluster.Name, "members", members, "state_replicas", cluster.Replicas(members),
			"routes", cfg.NATS.Cluster.Routes)
	}
	c.mail, err = startMailer(cfg, c.log, c.metrics, c.state, c.lead, c.reg)
	return err
}

// startIntake connects the event publisher, the heartbeat intake and the
// bookings (published to operators; in a cluster, applied by the others).
func (c *Coordinator) startIntake() (err error) {
	if c.pubConn, err = c.nats.Connect("simgate-coordinator-events"); err != nil {
		return fmt.Errorf("connecting the event publisher: %w", err)
	}
	c.pub = schema.NewPublisher(c.pubConn, c.subj)
	iopts := bus.IntakeOptions{
		Subjects: c.subj,
		Sink:     cluster.Sink{Registry: c.reg, OnReport: c.report, Judges: c.quorum.Current},
		Logger:   c.log,
		Dropped:  c.metrics.DroppedHeartbeat,
		Received: c.metrics.HeartbeatsReceived.Inc,
	}
	if c.cfg.Clustered() {
		iopts.Peers, iopts.Quiet = c.nats.Peers, func() []string { return c.peers.Quiet(c.nats.Routes()) }
		iopts.MemberGone = func(entries []string) { c.reg.GraceServers(entries, time.Now()) }
	}
	if c.intake, err = bus.StartIntake(c.nats, iopts); err != nil {
		return fmt.Errorf("subscribing to heartbeats: %w", err)
	}
	b, err := cluster.NewBookings(cluster.BookingsOptions{Conn: c.pubConn, Subjects: c.subj, Self: c.nats.Name(),
		Registry: c.reg, Metrics: c.metrics, Interest: c.nats.Interest, Clustered: c.cfg.Clustered()})
	if err != nil {
		return fmt.Errorf("subscribing to the other members' bookings: %w", err)
	}
	c.bookings = b
	c.registerGauges()
	c.ready.IntakeStarted()
	return nil
}

// newLine builds the waiting room's line (PROTOCOL §1.2), nil when
// queue.enabled is false: in memory alone, in the cluster's line bucket
// (one line, every ticket valid on every member) in a cluster, where the
// member that leads seats the visitors.
func (c *Coordinator) newLine() error {
	q := c.cfg.Queue
	if !q.Enabled {
		return nil
	}
	m := c.metrics
	o := waitroom.Options{Seats: c.reg, Max: q.Max, PerAddress: q.MaxPerAddress, MaxWait: q.MaxWait,
		Seated: func(wait time.Duration) { m.Seated(wait); c.waits.Seat(wait) },
		Left:   func(why waitroom.Reason) { m.LeftLine(why.String()) },
		Logger: c.log.With("component", "waitroom"),
	}
	if c.cfg.Clustered() {
		var err error
		if c.lineKV, err = state.NewLineKV(c.stateConn, cluster.Replicas(c.members), q.MaxWait+10*time.Minute, o.Logger); err != nil {
			return fmt.Errorf("waiting room's line: %w", err)
		}
		o.Store, o.Self, o.Lead, o.Members = c.lineKV, c.nats.ID(), c.lead.Holds, c.nats.Peers
	}
	c.line = waitroom.New(o)
	return nil
}

// newAPI builds the HTTP API and its server.
func (c *Coordinator) newAPI(guard *login.Guard) {
	cfg := c.cfg
	var line httpapi.Line
	if c.line != nil {
		line = c.line // a nil *Line must not become a non-nil interface
	}
	// Rate 0 (unlimited) still tells visitors' addresses behind trusted proxies.
	limiter := httpapi.NewLimiter(cfg.HTTP.SessionRate, cfg.HTTP.SessionBurst, cfg.HTTP.TrustedProxies)
	c.api = httpapi.New(httpapi.Options{
		Registry: c.reg,
		SSL:      cfg.SSL,
		Logger:   c.log,
		Metrics:  c.metrics, LogBudget: c.nats.LogBudget(),
		Ready:                c.ready.Ready,
		AwaitReady:           c.ready.AwaitOpen,
		MaxWebSocketClients:  httpapi.WebSocketCap(cfg.HTTP.MaxWebSocketClients, cfg.HTTP.MaxWebSocketClients == config.Default().HTTP.MaxWebSocketClients, c.log),
		MaxMonitorClients:    cfg.HTTP.MaxMonitorClients,
		MaxMonitorPerAddress: cfg.HTTP.MaxMonitorPerAddr,
		Limiter:              limiter,
		AllowedOrigins:       cfg.HTTP.AllowedOrigins,
		Version:              version.String(),
		Started:              c.reg.Started(),
		Member: func() httpapi.Member {
			seen := c.nats.Members()
			return httpapi.Member{Name: c.nats.Name(), Leader: c.lead.Holds(), Members: seen,
				Quorum: c.quorum.Have(seen), Needed: c.quorum.Needed()}
		},
		Admin:       adminByPassword(cfg.NATS.Users, guard),
		Alerts:      func() []string { return append(c.mail.Alerts(), c.quorum.Alerts()...) }, // summary.alerts, the monitor
		Drain:       c.drain,
		Line:        line,
		Capacity:    func() []byte { return c.capacity.Document(c.runCtx, false) },
		Server:      cfg.Server,
		Port:        cfg.Port,
		PortRewrite: cfg.PortRewrite,
	})
	limits := httpapi.DefaultLimits()
	limits.MaxConns = httpapi.ConnCap()
	limits.Exempt = limiter.TrustedHost // the local Apache's pool
	c.http = httpapi.NewServer(c.api, limits, c.log)
}

// startLoops starts the goroutines Stop waits for: the farm's NATS
// service and drains, the bookings and quorum watch of a cluster, the
// poller, readiness, mail, HTTP and the silence sweep.
func (c *Coordinator) startLoops(ctx context.Context) error {
	if err := c.startHistory(); err != nil {
		return err
	}
	if err := c.startOps(); err != nil {
		return err
	}
	if c.cfg.Clustered() { // with peers to hear
		c.spawn(c.bookings.Run)
		c.spawn(c.quorum.Run)
		c.spawn(c.peers.Run)
	}
	// Servers without an agent are polled as the original polled them;
	// the in-process agent's own server never needs it.
	polled := slices.DeleteFunc(slices.Clone(c.cfg.SimulationServers), func(s string) bool { return s == c.cfg.LocalAgent })
	if len(polled) > 0 {
		p := poll.New(poll.Options{Servers: polled, SSL: c.cfg.SSL, Registry: c.reg, OnReport: c.report,
			Logger: c.log.With("component", "poll")})
		c.spawn(p.Run)
	}
	if c.line != nil {
		c.spawn(func(ctx context.Context) { c.line.Run(ctx.Done(), sweepEvery) })
		if c.lineKV != nil {
			c.spawn(func(ctx context.Context) { c.lineKV.Watch(ctx, c.line) })
		}
	}
	c.spawn(c.ready.AwaitReady)
	c.spawn(c.mail.Check)
	c.spawn(c.mail.Run)
	c.serving.Add(1)
	go func() {
		defer c.serving.Done()
		if c.from.Parent && !c.ready.AwaitOpenOr(ctx, handoverWait) {
			return
		}
		// Closed: stopped, or a reload's hand-over closed the listener first.
		if err := c.http.Serve(c.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			c.log.Error("HTTP server stopped", "error", err)
		}
	}()
	c.spawn(c.sweep)
	return nil
}

// spawn runs f in the coordinator's lifetime: with its loops' context,
// waited for by Stop.
func (c *Coordinator) spawn(f func(ctx context.Context)) {
	c.wg.Add(1)
	go func() { defer c.wg.Done(); f(c.runCtx) }()
}
