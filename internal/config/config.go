// Package config reads and validates the coordinator's JSON configuration:
// every key of the original Webots session server with its original default,
// and the keys simgate adds. It is the only place that knows key names;
// the rest of the program receives a validated Config.
package config

import (
	"bytes"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the validated configuration of the coordinator.
type Config struct {
	Server             string   // public host name, used in links and e-mails
	SSL                bool     // hand out wss:// URLs
	Port               int      // local HTTP port
	PortRewrite        bool     // links are written host/port (Apache rewrite) rather than host:port
	SimulationServers  []string // entries as configured: host/port or host:port
	Administrator      string   // e-mail address to notify; empty: notifications off
	MailServer         string
	MailServerPort     int
	MailSender         string
	MailSenderUser     string
	MailSenderPassword string
	LogDir             string
	Debug              bool

	NATS             NATS
	LoadThreshold    float64       // percent at or above which a server takes no new session
	HeartbeatTimeout time.Duration // 0: 3 × the server's last interval
	LocalAgent       string        // entry an in-process agent speaks for; empty: none
	Mail             Mail
	HTTP             HTTP
	Queue            Queue

	// Path is the file the configuration came from; empty for the built-in default.
	Path string
	// Warnings are problems that do not stop the start (obsolete keys,
	// a password readable by others); the caller logs them once logging is set up.
	Warnings []string
}

// NATS configures the embedded NATS server.
type NATS struct {
	Listen string // host:port agents connect to
	// Websocket is the host:port of NATS's WebSocket listener, for agents
	// that reach the coordinator through Apache on 443 (wss://host/nats);
	// "" is off.
	Websocket string
	Prefix    string    // first token of every subject
	TLSCert   string    // PEM certificate of the listener; with TLSKey, TLS only
	TLSKey    string    // its private key
	Users     NATSUsers // any: authentication on, nobody connects without credentials
	// Cluster, when set, makes this coordinator one member of several.
	Cluster *Cluster
}

// Cluster is nats.cluster: several coordinators as one NATS cluster.
type Cluster struct {
	Name   string   // the cluster's name, the same on every member (default "simgate")
	Listen string   // host:port the other members' routes connect to
	Routes []string // nats-route://host:port of the members; this one's may be listed
}

// NATSUser is one NATS user: an agent bound to its servers, or a
// read-only monitor. Exactly one of Password (with User), Token or Nkey.
type NATSUser struct {
	User     string
	Password string // plain, or a bcrypt hash ("$2a$…")
	Token    string
	Nkey     string // public user nkey, "U…"
	Role     string // "agent" or "monitor"
	Servers  []string
}

// Mail tunes the notification queue; the addresses live in Config for
// compatibility with the original keys.
type Mail struct {
	// Queue is kept here between runs (mails not yet sent at a stop).
	RetryMax   time.Duration // longest wait between two attempts
	GiveUp     time.Duration // a mail still unsent after this long is abandoned (logged at error level)
	HoldOff    time.Duration // after a down/full mail for a server, further ones wait this long and go as one digest
	Hysteresis float64       // a full server is "available again" only below loadThreshold − hysteresis
	Grace      time.Duration // a configured server never heard from within this period is reported as not responding
	CAFile     string        // PEM certificates trusted for the SMTP server's TLS, besides the system's
	// VerifyCertificate: the SMTP server's TLS certificate must verify
	// (true), or is accepted whatever it is, as the original did (false);
	// nil: verified, except for a mail server on this machine (localhost,
	// loopback) without mail.caFile, whose certificate is commonly
	// self-signed and which no one on the network can stand in for.
	VerifyCertificate *bool
}

// HTTP holds the limits applied to clients.
type HTTP struct {
	MaxWebSocketClients int      // concurrent WebSocket clients on / and /monitor
	MaxMonitorClients   int      // live /monitor pages in all
	MaxMonitorPerAddr   int      // live /monitor pages of one client address
	MaxBookingsPerAddr  int      // unconfirmed /session bookings one client address may hold (a class)
	SessionRate         float64  // /session requests per second per client address; 0: unlimited
	SessionBurst        int      // burst allowed above SessionRate
	TrustedProxies      []string // peers whose X-Forwarded-For is believed (CIDR or address)
	AllowedOrigins      []string // WebSocket origins allowed; empty: all, as the original
}

// Queue is the waiting room (PROTOCOL §1.2): visitors a full farm cannot
// seat now wait in line for the next free seat.
type Queue struct {
	Enabled bool          // off: a full farm answers the original's sentence
	Max     int           // visitors waiting at most (tickets not yet opened included)
	MaxWait time.Duration // a visitor waiting this long is told to try later
	// MaxPerAddress bounds the tickets one client address holds at once
	// (a large class behind a school's address).
	MaxPerAddress int
}

// DefaultQueue is the waiting room's default: on, 1,000 visitors, 30 minutes.
var DefaultQueue = Queue{Enabled: true, Max: 1000, MaxWait: 30 * time.Minute, MaxPerAddress: 200}

// Default returns the configuration used for every key a file leaves out:
// the original session server's defaults, and simgate's own.
func Default() Config {
	return Config{
		Server:         "localhost",
		SSL:            true,
		Port:           1999,
		PortRewrite:    true,
		MailServerPort: 25,
		LogDir:         "log",
		NATS:           NATS{Listen: "127.0.0.1:4222", Prefix: "simgate"},
		LoadThreshold:  95,
		Mail: Mail{
			RetryMax:   5 * time.Minute,
			GiveUp:     24 * time.Hour,
			HoldOff:    10 * time.Minute,
			Hysteresis: 5,
			Grace:      30 * time.Second,
		},
		HTTP: HTTP{
			MaxWebSocketClients: 20000,
			MaxMonitorClients:   1000,
			MaxMonitorPerAddr:   10,
			MaxBookingsPerAddr:  40,
			SessionRate:         20,
			// A class of 100 behind one school address asking within a
			// second is not answered 429 (issue 29).
			SessionBurst:   120,
			TrustedProxies: []string{"127.0.0.1", "::1"},
		},
		Queue: DefaultQueue,
	}
}

// Localhost is the configuration of a coordinator started without a file:
// one simulation server on this machine, spoken for by an in-process agent,
// plain ws:// URLs and logs on standard output.
func Localhost() Config {
	c := Default()
	c.SSL = false
	c.PortRewrite = false // no Apache in front
	c.Debug = true
	c.SimulationServers = []string{"localhost:2000"}
	c.LocalAgent = "localhost:2000"
	return c
}

// Error is a configuration problem; Key names the offending key
// ("nats.listen" for a nested one), empty when the file itself is unreadable.
type Error struct {
	Path string
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	where := "configuration"
	if e.Path != "" {
		where = e.Path
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", where, e.Msg)
	}
	return fmt.Sprintf("%s: key %q: %s", where, e.Key, e.Msg)
}

// Load reads, parses and validates the file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, &Error{Path: path, Msg: fmt.Sprintf("cannot read: %v", err)}
	}
	c, err := Parse(data)
	if err != nil {
		if ce, ok := err.(*Error); ok {
			ce.Path = path
		}
		return Config{}, err
	}
	c.Path = path
	if secret := c.secretKey(); secret != "" {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s holds %s and is readable by every user of this machine (mode %v): chmod o-r it", path, secret, fi.Mode().Perm()))
		}
	}
	return c, nil
}

// Parse parses and validates a configuration document.
func Parse(data []byte) (Config, error) {
	c := Default()
	mailUserSet := false
	fields := []field{
		{"server", stringVal(&c.Server)},
		{"ssl", legacyBoolVal(&c.SSL, &c.Warnings)},
		{"port", legacyPortVal(&c.Port, &c.Warnings)},
		{"portRewrite", legacyBoolVal(&c.PortRewrite, &c.Warnings)},
		{"simulationServers", stringsVal(&c.SimulationServers)},
		{"administrator", stringVal(&c.Administrator)},
		{"mailServer", stringVal(&c.MailServer)},
		{"mailServerPort", legacyPortVal(&c.MailServerPort, &c.Warnings)},
		{"mailSender", stringVal(&c.MailSender)},
		{"mailSenderUser", func(k string, raw []byte) error { mailUserSet = true; return stringVal(&c.MailSenderUser)(k, raw) }},
		{"mailSenderPassword", stringVal(&c.MailSenderPassword)},
		{"logDir", stringVal(&c.LogDir)},
		{"debug", legacyBoolVal(&c.Debug, &c.Warnings)},
		{"sslKey", obsolete(&c.Warnings)},
		{"sslCertificate", obsolete(&c.Warnings)},
		{"nats", objectVal([]field{
			{"listen", stringVal(&c.NATS.Listen)},
			{"websocket", objectVal([]field{
				{"listen", stringVal(&c.NATS.Websocket)},
			})},
			{"cluster", func(key string, raw []byte) error {
				c.NATS.Cluster = &Cluster{Name: "simgate"}
				return objectVal([]field{
					{"name", stringVal(&c.NATS.Cluster.Name)},
					{"listen", stringVal(&c.NATS.Cluster.Listen)},
					{"routes", stringsVal(&c.NATS.Cluster.Routes)},
				})(key, raw)
			}},
			{"prefix", stringVal(&c.NATS.Prefix)},
			{"tls", objectVal([]field{
				{"cert", stringVal(&c.NATS.TLSCert)},
				{"key", stringVal(&c.NATS.TLSKey)},
			})},
			{"users", objectsVal(func() []field {
				c.NATS.Users = append(c.NATS.Users, NATSUser{})
				u := &c.NATS.Users[len(c.NATS.Users)-1]
				return []field{
					{"user", stringVal(&u.User)},
					{"password", stringVal(&u.Password)},
					{"token", stringVal(&u.Token)},
					{"nkey", stringVal(&u.Nkey)},
					{"role", stringVal(&u.Role)},
					{"servers", stringsVal(&u.Servers)},
				}
			})},
		})},
		{"loadThreshold", floatVal(&c.LoadThreshold)},
		{"heartbeatTimeout", secondsVal(&c.HeartbeatTimeout)},
		{"localAgent", stringVal(&c.LocalAgent)},
		{"mail", objectVal([]field{
			{"retryMax", secondsVal(&c.Mail.RetryMax)},
			{"giveUp", secondsVal(&c.Mail.GiveUp)},
			{"holdOff", secondsVal(&c.Mail.HoldOff)},
			{"hysteresis", floatVal(&c.Mail.Hysteresis)},
			{"grace", secondsVal(&c.Mail.Grace)},
			{"caFile", stringVal(&c.Mail.CAFile)},
			{"verifyCertificate", func(key string, raw []byte) error {
				var v bool
				if err := boolVal(&v)(key, raw); err != nil {
					return err
				}
				c.Mail.VerifyCertificate = &v
				return nil
			}},
		})},
		{"http", objectVal([]field{
			{"maxWebSocketClients", intVal(&c.HTTP.MaxWebSocketClients)},
			{"maxMonitorClients", intVal(&c.HTTP.MaxMonitorClients)},
			{"maxMonitorClientsPerAddress", intVal(&c.HTTP.MaxMonitorPerAddr)},
			{"maxBookingsPerAddress", intVal(&c.HTTP.MaxBookingsPerAddr)},
			{"sessionRate", floatVal(&c.HTTP.SessionRate)},
			{"sessionBurst", intVal(&c.HTTP.SessionBurst)},
			{"trustedProxies", stringsVal(&c.HTTP.TrustedProxies)},
			{"allowedOrigins", stringsVal(&c.HTTP.AllowedOrigins)},
		})},
		{"queue", objectVal([]field{
			{"enabled", boolVal(&c.Queue.Enabled)},
			{"max", intVal(&c.Queue.Max)},
			{"maxWait", secondsVal(&c.Queue.MaxWait)},
			{"maxPerAddress", intVal(&c.Queue.MaxPerAddress)},
		})},
	}
	if rest, ok := bytes.CutPrefix(data, []byte("\xEF\xBB\xBF")); ok {
		data = rest
		c.Warnings = append(c.Warnings, "the file starts with a UTF-8 byte-order mark, which JSON does not have: ignored (the original refused it)")
	}
	if err := objectWith(fields, &c.Warnings)("", data); err != nil {
		return Config{}, err
	}
	if !mailUserSet {
		c.MailSenderUser = c.MailSender
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) validate() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	// The original's keys: a value it would have run with is kept, with a
	// warning; only what it could not have run with is an error.
	warn := func(key, format string, args ...any) {
		c.Warnings = append(c.Warnings, fmt.Sprintf("key %q: ", key)+fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(c.Server) == "" {
		warn("server", "is empty: links in e-mails will name no host")
	}
	if c.Port < 0 || c.Port > 65535 {
		return bad("port", "must be a TCP port between 1 and 65535 (0: any free port), not %d", c.Port)
	}
	if c.MailServerPort < 1 || c.MailServerPort > 65535 {
		return bad("mailServerPort", "must be a TCP port between 1 and 65535, not %d", c.MailServerPort)
	}
	seen := make(map[string]bool, len(c.SimulationServers))
	kept := c.SimulationServers[:0:0]
	for i, s := range c.SimulationServers {
		switch {
		case strings.TrimSpace(s) == "":
			warn("simulationServers", "item %d is empty: ignored", i)
			continue
		case seen[s]:
			warn("simulationServers", "item %d (%q) is listed twice: read once (the original polled it twice)", i, s)
			continue
		}
		if err := CheckEntry(s); err != nil {
			warn("simulationServers", "item %d (%q): %v; kept, but it cannot be reached as written", i, s, err)
		}
		seen[s] = true
		kept = append(kept, s)
	}
	c.SimulationServers = kept
	for _, k := range []struct {
		key, val string
	}{{"administrator", c.Administrator}, {"mailSender", c.MailSender}} {
		if k.val == "" {
			continue
		}
		if _, err := mail.ParseAddress(k.val); err != nil {
			warn(k.key, "%q is not an e-mail address (%v): mail will not get through", k.val, err)
		}
	}
	if strings.TrimSpace(c.LogDir) == "" {
		warn("logDir", "is empty: logs go to session/ under the working directory")
		c.LogDir = "."
	}
	if err := checkListen(c.NATS.Listen); err != nil {
		return bad("nats.listen", "%v", err)
	}
	if !validToken(c.NATS.Prefix) {
		return bad("nats.prefix", "%q must be one NATS token of letters, digits, '_' or '-'", c.NATS.Prefix)
	}
	if err := c.validateNATSAuth(seen); err != nil {
		return err
	}
	if !(c.LoadThreshold > 0 && c.LoadThreshold <= 100) {
		return bad("loadThreshold", "must be a percentage in (0, 100], not %v", c.LoadThreshold)
	}
	if c.HeartbeatTimeout < 0 {
		return bad("heartbeatTimeout", "must be 0 (3 × the interval) or a positive number of seconds")
	}
	if c.LocalAgent != "" {
		if err := CheckEntry(c.LocalAgent); err != nil {
			return bad("localAgent", "%q: %v", c.LocalAgent, err)
		}
		if len(c.SimulationServers) > 0 && !seen[c.LocalAgent] {
			return bad("localAgent", "%q is not one of simulationServers", c.LocalAgent)
		}
	}
	return c.validateMailAndHTTP()
}

// validateMailAndHTTP checks the keys of mail and http.
func (c *Config) validateMailAndHTTP() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if !(c.Mail.Hysteresis >= 0 && c.Mail.Hysteresis < c.LoadThreshold) {
		return bad("mail.hysteresis", "must be between 0 and loadThreshold, not %v", c.Mail.Hysteresis)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"mail.retryMax", c.Mail.RetryMax}, {"mail.giveUp", c.Mail.GiveUp}} {
		if d.v <= 0 {
			return bad(d.key, "must be a positive number of seconds")
		}
	}
	if c.Mail.HoldOff < 0 || c.Mail.Grace < 0 {
		return bad("mail", "holdOff and grace must not be negative")
	}
	if c.HTTP.MaxWebSocketClients < 1 {
		return bad("http.maxWebSocketClients", "must be at least 1")
	}
	if c.HTTP.MaxBookingsPerAddr < 1 || c.HTTP.MaxBookingsPerAddr > 10000 {
		return bad("http.maxBookingsPerAddress", "must be between 1 and 10000 (default 40: a large class behind one address)")
	}
	if c.HTTP.MaxMonitorClients < 1 || c.HTTP.MaxMonitorPerAddr < 1 {
		return bad("http.maxMonitorClients", "maxMonitorClients and maxMonitorClientsPerAddress must be at least 1")
	}
	if c.HTTP.SessionRate < 0 || c.HTTP.SessionBurst < 0 || (c.HTTP.SessionRate > 0 && c.HTTP.SessionBurst < 1) {
		return bad("http.sessionRate", "sessionRate must be ≥ 0 (0: unlimited) and sessionBurst ≥ 1 when it is set")
	}
	for _, p := range c.HTTP.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				return bad("http.trustedProxies", "%q is neither an IP address nor a CIDR range", p)
			}
		}
	}
	if c.Queue.Max < 1 || c.Queue.Max > 100000 {
		return bad("queue.max", "must be between 1 and 100000 visitors waiting (default 1000), not %d", c.Queue.Max)
	}
	if c.Queue.MaxWait <= 0 {
		return bad("queue.maxWait", "must be a positive number of seconds (default 1800)")
	}
	if c.Queue.MaxPerAddress < 1 {
		return bad("queue.maxPerAddress", "must be at least 1 (default 200: a large class behind one address), not %d", c.Queue.MaxPerAddress)
	}
	c.Queue.MaxPerAddress = min(c.Queue.MaxPerAddress, c.Queue.Max) // one address never holds more than the line
	return nil
}

// OverrideListen replaces the HTTP port and the NATS listen address with
// the command line's (nil: keep the file's) and validates the result, so a
// flag is held to the same rules as the key it replaces.
func (c *Config) OverrideListen(port *int, natsListen *string) error {
	if port != nil {
		c.Port = *port
	}
	if natsListen != nil {
		c.NATS.Listen = *natsListen
	}
	// Validation adds its own warnings: keep one of each.
	had := c.Warnings
	c.Warnings = nil
	err := c.validate()
	for _, w := range c.Warnings {
		if !slices.Contains(had, w) {
			had = append(had, w)
		}
	}
	c.Warnings = had
	return err
}

// MailOff says why notifications are off, or "" when they are on.
func (c *Config) MailOff() string {
	switch {
	case c.Administrator == "":
		return "no administrator is configured"
	case c.MailServer == "":
		return "administrator is set but mailServer is not"
	case c.MailSender == "":
		return "administrator is set but mailSender is not"
	}
	return ""
}

// Clustered says whether this coordinator is a member of a cluster
// (nats.cluster): the one answer every part of the coordinator asks.
func (c *Config) Clustered() bool { return c.NATS.Cluster != nil }

// VerifyMailCertificate says whether the SMTP server's certificate must
// verify (mail.verifyCertificate; by default, unless the server is local).
func (c *Config) VerifyMailCertificate() bool {
	if v := c.Mail.VerifyCertificate; v != nil {
		return *v
	}
	if c.Mail.CAFile != "" {
		return true // a CA named is a CA to verify with
	}
	host := strings.TrimSuffix(strings.ToLower(c.MailServer), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || !ip.IsLoopback()
}

// MonitorURL is the link to the coordinator's monitor page, built as the
// original built it: http(s)://server + ("/" or ":") + port + "/monitor".
func (c *Config) MonitorURL() string {
	scheme := "http"
	if c.SSL {
		scheme = "https"
	}
	sep := ":"
	if c.PortRewrite {
		sep = "/"
	}
	return scheme + "://" + c.Server + sep + strconv.Itoa(c.Port) + "/monitor"
}

// CheckEntry checks that s is a simulation server entry: host/port or host:port.
func CheckEntry(s string) error {
	i := strings.LastIndexAny(s, "/:")
	if i <= 0 || i == len(s)-1 {
		return fmt.Errorf("want host/port or host:port")
	}
	host, port := s[:i], s[i+1:]
	if strings.ContainsAny(host, " /\t\r\n") || strings.Contains(host, "://") {
		return fmt.Errorf("host %q is not a host name", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not between 1 and 65535", port)
	}
	return nil
}

func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port %q is not between 0 and 65535", addr, port)
	}
	return nil
}

func loopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
