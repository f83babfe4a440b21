// Package bus is the coordinator's NATS side: the embedded server (users,
// roles, permissions, the cluster's routes, JetStream's store) and the
// intake of heartbeats and connection losses. The wire contract an agent
// and any client need (subjects, heartbeat and event schemas) is
// internal/schema, which links no server. It knows nothing of placement or
// HTTP: what it receives goes to a Sink.
package bus

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/logging"
	"github.com/simgate/simgate/internal/login"
	"github.com/simgate/simgate/internal/schema"
)

// Account names inside the embedded server. Agents and the coordinator share
// the application account; the system account carries the server's
// connect/disconnect advisories, which only the coordinator reads.
const (
	appAccount = "SIMGATE"
	sysAccount = "SYS"
	// apiAccount holds the farm's NATS service (simgate.api.*): the
	// application account imports it with the caller's identity shared, so
	// that a drain knows which admin asked for it.
	apiAccount = "SIMGATE_API"
)

// ServerOptions configures the embedded NATS server.
type ServerOptions struct {
	Listen string // host:port; port 0 picks a free one
	Logger *slog.Logger
	// Subjects is the subject space permissions are written in.
	Subjects schema.Subjects
	// Users, when any, turn authentication on: nobody connects without
	// credentials. Without them any local client is an anonymous agent.
	Users []User
	// Servers are the configured entries: a connection may be named after
	// one only by an agent user bound to it.
	Servers []string
	// TLSCert and TLSKey, both set, make the listeners TLS-only.
	TLSCert, TLSKey string
	// Websocket, when set, is the host:port of NATS's WebSocket listener
	// (port 0 picks a free one): the same users and roles, TLS when the
	// TCP listener has it, plain behind a local Apache otherwise.
	Websocket string
	// TrustedProxies are the peers (addresses or CIDR ranges, besides
	// loopback) whose X-Forwarded-For names a WebSocket client: the
	// Apache in front of the members (http.trustedProxies).
	TrustedProxies []string
	// Denied, when set, is called with the subject of each publish the
	// server refused for want of permission (a forged heartbeat).
	Denied func(subject string)
	// Oversize, when set, is called for each client the server cut off for
	// a message over MaxHeartbeat: the intake never sees those, so this is
	// where the "size" drops are counted.
	Oversize func()
	// StoreDir holds JetStream's store (the coordinators' shared state) and
	// this member's server name; "" keeps JetStream off.
	StoreDir string
	// Cluster, when set, makes this server one member of a NATS cluster of
	// coordinators.
	Cluster *ClusterOptions
	// Guard checks passwords (shared with HTTP Basic for admins); nil
	// makes one for Users.
	Guard *login.Guard
}

// ClusterOptions makes the embedded server a cluster member (PROTOCOL §3
// nats.cluster).
type ClusterOptions struct {
	Name   string   // the cluster's name, the same on every member
	Listen string   // host:port for the other members' routes; port 0 picks one
	Routes []string // nats-route://host:port of the members (this one may be listed)
	// Secret, when set, is the password every member's routes present: a
	// route that does not know it is refused.
	Secret string
}

// Server is the embedded NATS server agents connect to.
type Server struct {
	ns        *server.Server
	logBudget *logging.Budget // the lines clients can cause, in all (LogBudget)
	ws        bool            // the WebSocket listener is on
	clustered bool
	sysPass   string
	coordPass string
	apiPass   string
	subj      schema.Subjects
	app       *server.Account // the registered application account
	auth      *authenticator
}

const (
	sysUser   = "simgate-system"
	coordUser = "simgate-coordinator"
	apiUser   = "simgate-api"
	anonUser  = "simgate-agent"
)

// ErrStore is StartServer's error when the state store could not be opened:
// the caller may set it aside and start again.
var ErrStore = errors.New("the state store could not be opened")

// StartServer starts the embedded NATS server and waits until it accepts connections.
func StartServer(o ServerOptions) (*Server, error) {
	host, port, err := listenAddr("nats listen", o.Listen)
	if err != nil {
		return nil, err
	}
	if o.Subjects.Prefix == "" {
		o.Subjects.Prefix = schema.DefaultPrefix
	}
	s := &Server{sysPass: secret(), coordPass: secret(), apiPass: secret(), subj: o.Subjects}
	name := "simgate"
	switch {
	case o.StoreDir != "":
		if name, err = serverName(o.StoreDir); err != nil {
			return nil, err
		}
	case o.Cluster != nil:
		name = "simgate-" + secret()[:8] // members must differ; without a store, for this run
	}
	sys := server.NewAccount(sysAccount)
	app := server.NewAccount(appAccount)
	api := server.NewAccount(apiAccount)
	s.logBudget = logging.NewBudget()
	auth, err := newAuthenticator(o, app, sys, api, map[string]string{sysUser: s.sysPass, coordUser: s.coordPass, apiUser: s.apiPass}, s.logBudget)
	s.auth = auth
	if err != nil {
		return nil, err
	}
	opts, err := serverOptions(o, name, host, port, auth, []*server.Account{sys, app, api})
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS server: %w", err)
	}
	// The server registers its own copies of the accounts: users must carry those.
	regApp, err1 := ns.LookupAccount(appAccount)
	regSys, err2 := ns.LookupAccount(sysAccount)
	regAPI, err3 := ns.LookupAccount(apiAccount)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("embedded NATS server accounts: %w", err)
	}
	auth.bind(map[*server.Account]*server.Account{app: regApp, sys: regSys, api: regAPI})
	if err := exportAPI(regAPI, regApp, o.Subjects); err != nil {
		return nil, fmt.Errorf("the farm's NATS service: %w", err)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fatal := make(chan string, 1)
	configured := map[string]bool{}
	for _, entry := range o.Servers {
		configured[o.Subjects.Load(entry)] = true
	}
	ns.SetLoggerV2(natsLogger{l: logger.With("component", "nats"), denied: o.Denied, fatal: fatal,
		throttle: logging.NewThrottle(time.Minute, logging.ClientKeys).Within(s.logBudget), oversize: o.Oversize, configured: configured}, false, false, false)
	go ns.Start()
	// A listener that cannot bind (a busy port) fails the start at once,
	// with nats-server's own reason, rather than after the readiness wait.
	ready := make(chan bool, 1)
	go func() { ready <- ns.ReadyForConnections(10 * time.Second) }()
	select {
	case ok := <-ready:
		if !ok {
			ns.Shutdown()
			return nil, fmt.Errorf("embedded NATS server did not start listening on %s within 10 s", o.Listen)
		}
	case msg := <-fatal:
		ns.Shutdown()
		err := fmt.Errorf("embedded NATS server (nats.listen %s, websocket %q): %s", o.Listen, o.Websocket, msg)
		if strings.Contains(msg, "JetStream") || strings.Contains(msg, "jetstream") {
			err = fmt.Errorf("%w: %w", ErrStore, err)
		}
		return nil, err
	}
	if o.StoreDir != "" {
		// The application account keeps the coordinators' state: agents and
		// monitors get no JetStream API in their permissions.
		if err := regApp.EnableJetStream(nil, nil); err != nil {
			ns.Shutdown()
			return nil, fmt.Errorf("%w: enabling JetStream for the coordinators' state: %w", ErrStore, err)
		}
	}
	s.ns, s.ws, s.clustered, s.app = ns, o.Websocket != "", o.Cluster != nil, regApp
	return s, nil
}

// serverOptions is nats-server's options for o: listeners, accounts,
// authentication, TLS, WebSocket, JetStream and the cluster.
func serverOptions(o ServerOptions, name, host string, port int, auth *authenticator, accounts []*server.Account) (*server.Options, error) {
	opts := &server.Options{
		ServerName:                 name,
		Host:                       host,
		Port:                       port,
		NoSigs:                     true, // the coordinator owns signal handling
		MaxPayload:                 schema.MaxHeartbeat,
		Accounts:                   accounts,
		SystemAccount:              sysAccount,
		CustomClientAuthentication: auth,
		AlwaysEnableNonce:          auth.needsNonce(),
	}
	if o.TLSCert != "" || o.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.TLSCert, KeyFile: o.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("NATS TLS certificate: %w", err)
		}
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, tc, 5
	}
	if o.Websocket != "" {
		wsHost, wsPort, err := listenAddr("nats websocket listen", o.Websocket)
		if err != nil {
			return nil, err
		}
		opts.Websocket.Host, opts.Websocket.Port = wsHost, wsPort
		opts.Websocket.HandshakeTimeout = 5 * time.Second
		// On loopback the listener is the local Apache's, which terminates
		// TLS for wss://host/nats and proxies plain ws:// to it: plain there
		// even with nats.tls (issue 32: agents over wss://…/nats failed).
		// Beyond loopback it takes TLS when nats.tls is set.
		opts.Websocket.TLSConfig = opts.TLSConfig
		if opts.TLSConfig == nil || isLoopback(wsHost) {
			opts.Websocket.TLSConfig, opts.Websocket.NoTLS = nil, true
		}
		// Agents send no Origin (nats-server accepts that); a browser always
		// does, and no page of anyone's has business on this listener: an
		// origin no browser can have refuses them all.
		opts.Websocket.AllowedOrigins = []string{NoBrowserOrigin}
	}
	if o.StoreDir != "" {
		opts.JetStream = true
		opts.StoreDir = filepath.Join(o.StoreDir, "jetstream")
		// The coordinators' state is a few kilobytes: bound what JetStream
		// may take rather than let it size itself on the machine.
		opts.JetStreamMaxMemory = 64 << 20
		opts.JetStreamMaxStore = 1 << 30
	}
	if o.Cluster != nil {
		if err := clusterOptions(opts, o.Cluster); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// exportAPI makes the API account's service reachable from the
// application account: its endpoints with the caller's identity
// (Nats-Request-Info names the user), and nats.go/micro's discovery
// subjects, which every member answers.
func exportAPI(api, app *server.Account, subj schema.Subjects) error {
	if err := api.AddServiceExportWithResponse(subj.APIAll(), server.Singleton, []*server.Account{app}); err != nil {
		return err
	}
	if err := api.AddServiceExportWithResponse("$SRV.>", server.Streamed, []*server.Account{app}); err != nil {
		return err
	}
	if err := app.AddServiceImportWithClaim(api, subj.APIAll(), "", &jwt.Import{Share: true}); err != nil {
		return err
	}
	return app.AddServiceImport(api, "$SRV.>", "")
}

// NoBrowserOrigin is the only Origin NATS's WebSocket listener accepts: a
// name under .invalid (RFC 2606), which no page can be served from.
const NoBrowserOrigin = "https://no-browser.invalid"

// routeUser is the user name routes between coordinators present.
const routeUser = "simgate-route"

// clusterOptions fills opts for a cluster member.
func clusterOptions(opts *server.Options, c *ClusterOptions) error {
	host, port, err := listenAddr("nats cluster listen", c.Listen)
	if err != nil {
		return err
	}
	opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = c.Name, host, port
	opts.Cluster.ConnectRetries = -1 // a member that is down now comes back: keep trying
	// A member that hangs (SIGSTOP, a frozen machine) keeps its TCP routes
	// open: pings every second, three unanswered, notice it in about 3 s
	// rather than nats-server's 2 min × 2 (clients are pinged alike).
	opts.PingInterval, opts.MaxPingsOut = time.Second, 3
	if c.Secret != "" {
		opts.Cluster.Username, opts.Cluster.Password = routeUser, c.Secret
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return fmt.Errorf("nats cluster route %q: %w", r, err)
		}
		if c.Secret != "" {
			u.User = url.UserPassword(routeUser, c.Secret)
		}
		opts.Routes = append(opts.Routes, u)
	}
	if opts.TLSConfig != nil {
		// Routes use the listener's certificate both ways, and trust it
		// besides the system's roots: one certificate for every member's
		// name, or one signed by a known authority.
		tc := opts.TLSConfig.Clone()
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, cert := range tc.Certificates {
			for _, der := range cert.Certificate {
				if c, err := x509.ParseCertificate(der); err == nil {
					pool.AddCert(c)
				}
			}
		}
		tc.RootCAs = pool
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, 5
	}
	return nil
}

// serverName is this member's name, kept in dir: JetStream's RAFT groups
// know a member by it, so it must survive restarts and differ between
// members (tests run several on one host, so the host name will not do).
func serverName(dir string) (string, error) {
	path := filepath.Join(dir, "server-name")
	if data, err := os.ReadFile(path); err == nil {
		if name := strings.TrimSpace(string(data)); validName(name) {
			return name, nil
		}
	}
	host, _ := os.Hostname()
	host = schema.Node(host)
	if host == "" {
		host = "coordinator"
	}
	name := "simgate-" + host + "-" + secret()[:8]
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("state folder: %w", err)
	}
	if err := os.WriteFile(path, []byte(name+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("keeping this coordinator's NATS server name: %w", err)
	}
	return name, nil
}

func validName(name string) bool { return name != "" && schema.Node(name) == name }

// listenAddr splits a host:port for nats-server, port 0 as its RANDOM_PORT
// (0 itself means "off" to its WebSocket listener).
func listenAddr(what, addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s address %q: %w", what, addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("%s port %q: %w", what, portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// ClientURL is the URL agents on this machine connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ns.Addr() }

// WebsocketURL is the URL of the WebSocket listener; "" when it is off.
func (s *Server) WebsocketURL() string {
	if !s.ws {
		return ""
	}
	return s.ns.WebsocketURL()
}

// Name is this server's name (unique in a cluster).
func (s *Server) Name() string { return s.ns.Name() }

// ID is this server's ID for this run: advisories name servers by it.
func (s *Server) ID() string { return s.ns.ID() }

// Leader says whether this member acts for the cluster: the JetStream meta
// leader, elected by RAFT among the members; a single coordinator always
// is. The coordinator mails and writes the shared state only while it
// leads, asking right before each act.
func (s *Server) Leader() bool {
	if !s.ns.JetStreamIsClustered() {
		return !s.clustered
	}
	return s.ns.JetStreamIsLeader()
}

// ClusterURL is where this member listens for routes; "" when not clustered.
func (s *Server) ClusterURL() string {
	if a := s.ns.ClusterAddr(); a != nil && s.clustered {
		return fmt.Sprintf("nats-route://%s", a.String())
	}
	return ""
}

// Peers is the set of server IDs this server reaches now: itself and the
// members its routes are connected to.
func (s *Server) Peers() map[string]bool {
	peers := map[string]bool{s.ns.ID(): true}
	if !s.clustered {
		return peers
	}
	if rz, err := s.ns.Routez(nil); err == nil {
		for _, r := range rz.Routes {
			peers[r.RemoteID] = true
		}
	}
	return peers
}

// Routes is the members this one has routes to: NATS server ID → name.
func (s *Server) Routes() map[string]string {
	out := map[string]string{}
	if rz, err := s.ns.Routez(nil); err == nil && s.clustered {
		for _, r := range rz.Routes {
			out[r.RemoteID] = r.RemoteName
		}
	}
	return out
}

// SendAgentsAway, on, refuses agents (connections named after a
// configured server entry) and closes those connected here, so that they
// reconnect to another member: this member reaches no majority of its
// cluster, and the majority judges their servers by their heartbeats
// (issue 30: agents whose pings this cut-off member answered never failed
// over, and the majority judged their servers down). Off, they are let in
// again. It returns how many it closed.
func (s *Server) SendAgentsAway(on bool) int {
	if s.auth == nil {
		return 0
	}
	s.auth.away.Store(on)
	if !on {
		return 0
	}
	cz, err := s.ns.Connz(&server.ConnzOptions{Limit: 1 << 20})
	if err != nil {
		return 0
	}
	n := 0
	for _, ci := range cz.Conns {
		if s.auth.claimed[ci.Name] && s.ns.DisconnectClientByID(ci.Cid) == nil {
			n++
		}
	}
	return n
}

// Members is how many members the cluster has now (1 when not clustered).
func (s *Server) Members() int {
	if !s.clustered {
		return 1
	}
	names := map[string]bool{s.ns.Name(): true}
	if rz, err := s.ns.Routez(nil); err == nil {
		for _, r := range rz.Routes {
			names[r.RemoteName] = true
		}
	}
	return len(names)
}

// Interest says whether anyone, on this server or another member, is
// subscribed to subject in the application account: what nobody reads
// need not be published.
func (s *Server) Interest(subject string) bool { return s.app.SubscriptionInterest(subject) }

// Ready reports whether the server accepts connections.
func (s *Server) Ready() bool { return s.ns.Running() }

// NumClients is the number of client connections.
func (s *Server) NumClients() int { return s.ns.NumClients() }

// Connect opens an in-process connection in the application account.
func (s *Server) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.InProcessServer(s.ns), nats.Name(name),
		nats.UserInfo(coordUser, s.coordPass), nats.MaxReconnects(-1), nats.CustomInboxPrefix(CoordinatorInbox)}, extra...)
	return nats.Connect("", opts...)
}

// ConnectAPI opens an in-process connection in the account of the farm's
// NATS service (simgate.api.*, reached from the application account).
func (s *Server) ConnectAPI(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.InProcessServer(s.ns), nats.Name(name),
		nats.UserInfo(apiUser, s.apiPass), nats.MaxReconnects(-1), nats.CustomInboxPrefix(CoordinatorInbox)}, extra...)
	return nats.Connect("", opts...)
}

// connectSystem opens an in-process connection in the system account.
func (s *Server) connectSystem() (*nats.Conn, error) {
	return nats.Connect("", nats.InProcessServer(s.ns), nats.Name("simgate-coordinator-system"),
		nats.UserInfo(sysUser, s.sysPass), nats.MaxReconnects(-1))
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

func secret() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// natsLogger sends nats-server's log lines to slog, and tells denied
// publishes to whoever counts them.
type natsLogger struct {
	l      *slog.Logger
	denied func(subject string)
	fatal  chan<- string // the first fatal message, for the start to fail with
	// throttle: a flood of refused publishes logs one line a minute per subject.
	throttle *logging.Throttle
	oversize func()
	// configured holds the configured servers' load subjects: their
	// refusals are logged apart from a flood's (Throttle.AllowKnown).
	configured map[string]bool
}

func (n natsLogger) Noticef(f string, v ...any) { n.l.Info(fmt.Sprintf(f, v...)) }
func (n natsLogger) Warnf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.HasPrefix(msg, "Plaintext passwords detected") {
		return // the coordinator's own users have random one-run secrets
	}
	if held, ok := n.throttle.Allow(logKey(msg), time.Now()); ok {
		n.l.Warn(msg, "held_since_last_line", held)
	}
}

// logKey is what a line of nats-server's is throttled by: the message with
// its numbers and quoted parts (a client's address, connection id, name)
// blanked, so that one refusal from many connections is one key.
func logKey(msg string) string {
	return logNoise.ReplaceAllString(msg, "#")
}

var logNoise = regexp.MustCompile(`"[^"]*"|\[[^\]]*\]|[0-9a-fA-F:.]*[0-9][0-9a-fA-F:.]*`)

func (n natsLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	n.l.Error(msg)
	if n.fatal != nil {
		select {
		case n.fatal <- msg:
		default:
		}
	}
}
func (n natsLogger) Errorf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.Contains(msg, "maximum payload exceeded") {
		if n.oversize != nil {
			n.oversize()
		}
		if held, ok := n.throttle.Allow("oversize", time.Now()); ok {
			n.l.Warn("NATS client cut off: message over the heartbeat size limit", "detail", msg, "cut_since_last_line", held)
		}
		return
	}
	if _, rest, ok := strings.Cut(msg, "Publish Violation - Subject "); ok {
		subject := rest
		if f := strings.Fields(rest); len(f) > 0 {
			if u, err := strconv.Unquote(f[0]); err == nil {
				subject = u
			}
		}
		allow := n.throttle.Allow
		if n.configured[subject] {
			allow = n.throttle.AllowKnown // a configured server's heartbeats refused: a misconfigured agent
		}
		if held, ok := allow(subject, time.Now()); ok {
			n.l.Warn("NATS publish refused: this user may not publish there", "detail", msg, "refused_since_last_line", held)
		}
		if n.denied != nil {
			n.denied(subject)
		}
		return
	}
	// A member whose peers are not up yet (or are restarting) retries its
	// routes: a cluster's normal life, not an error. So is a write on a
	// route whose member just went (a reload hands NATS over to the new
	// process; the route reconnects): the quorum watch says loudly what is
	// really wrong.
	if strings.HasPrefix(msg, "Error trying to connect to route") || (strings.Contains(msg, " - rid:") && routeGone(msg)) {
		if held, ok := n.throttle.Allow(logKey(msg), time.Now()); ok {
			n.l.Warn(msg, "held_since_last_line", held, "why", "a member is not up yet, or just went (a restart, a reload): nats-server retries its routes")
		}
		return
	}
	// Every other error a client can cause (nats-server's "authentication
	// error" for each refused login, slow consumers, parser errors) is
	// throttled like the ones above: a flood must not turn the log over.
	if held, ok := n.throttle.Allow(logKey(msg), time.Now()); ok {
		n.l.Error(msg, "held_since_last_line", held)
	}
}
func (n natsLogger) Debugf(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }

// routeGone reports whether a route's error says its peer went away.
func routeGone(msg string) bool {
	for _, s := range []string{"Error flushing", "broken pipe", "connection reset by peer", "use of closed network connection", "i/o timeout"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
func (n natsLogger) Tracef(f string, v ...any) { n.l.Debug(fmt.Sprintf(f, v...)) }

// isLoopback reports whether host (an address or "localhost") is this
// machine's loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// AwaitPorts waits until the process this one replaces (a reload) has let
// go of so's ports (it does once this one said it is ready: a moment
// later), at most within: NATS would log each failed bind as an error.
func AwaitPorts(so ServerOptions, within time.Duration, log *slog.Logger) {
	addrs := []string{so.Listen, so.Websocket}
	if so.Cluster != nil {
		addrs = append(addrs, so.Cluster.Listen)
	}
	deadline := time.Now().Add(within)
	for _, addr := range addrs {
		if addr == "" || strings.HasSuffix(addr, ":0") {
			continue
		}
		for {
			ln, err := net.Listen("tcp", addr)
			if err == nil {
				_ = ln.Close()
				break
			}
			if time.Now().After(deadline) {
				log.Warn("reload: the previous process still holds a NATS port", "address", addr, "error", err)
				return
			}
			time.Sleep(50 * time.Millisecond) // the previous process is stopping
		}
	}
}

// LogBudget bounds the log lines clients can cause, in all: this server's
// refused logins and publishes, its intake's dropped heartbeats, and what
// else a caller shares it with (the HTTP API's refused WebSocket clients).
func (s *Server) LogBudget() *logging.Budget { return s.logBudget }
