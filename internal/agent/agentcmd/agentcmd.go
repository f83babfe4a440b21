// Package agentcmd parses the agent's flags (each with an environment
// variable equivalent) and builds the agent and its NATS connection. It is
// the agent's one place for configuration.
package agentcmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/agent"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/schema"
)

// Options are the agent's settings.
type Options struct {
	NATS        string
	Server      string
	Interval    time.Duration
	Probe       string // URL, "off", or "" for the default derived from Server
	MaxSessions int
	Processes   string // comma-separated process names
	DrainFile   string
	SimConfig   string // webots-server's simulation.json; "" none
	Prefix      string
	User        string
	Password    string
	Token       string
	NkeyFile    string
	CA          string
	LogLevel    slog.Level
	Version     bool

	maxSessionsSet bool // -max-sessions given: the simulation config's maxConnections does not replace it
}

// serverHint says how -server must match the coordinator's configuration:
// written exactly as the entry of simulationServers and of this user's
// servers, separator included (host:port and host/port are two entries),
// naming the other spelling that may be the one configured.
func serverHint(server string) string {
	hint := fmt.Sprintf("-server (%s) must be written exactly as the coordinator's simulationServers entry, and the coordinator's nats.users entry of this agent's user must list that same entry in its servers; this agent gives %q",
		EnvName("server"), server)
	if other := otherSpelling(server); other != "" {
		hint += fmt.Sprintf(": if the coordinator lists %q, give that", other)
	}
	return hint
}

// otherSpelling is entry with the separator between host and port swapped
// (host:port ↔ host/port), "" when it has neither.
func otherSpelling(entry string) string {
	i := strings.LastIndexAny(entry, ":/")
	if i <= 0 || i == len(entry)-1 {
		return ""
	}
	sep := "/"
	if entry[i] == '/' {
		sep = ":"
	}
	return entry[:i] + sep + entry[i+1:]
}

// credentialNkey is the nkey seed systemd hands the unit as its
// credential agent.nk (LoadCredential=, README "Securing it"), "" without
// one: the agent runs as a dynamic user, which cannot read a seed kept
// mode 600 in /etc/simgate, and systemd reads it for it.
func credentialNkey() string {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return ""
	}
	p := filepath.Join(dir, "agent.nk")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// EnvName is the environment variable that sets a flag: SIMGATE_ + its
// name in capitals, '-' as '_' (-max-sessions: SIMGATE_MAX_SESSIONS).
func EnvName(flagName string) string {
	return "SIMGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse reads flags, then environment variables for flags not given.
func Parse(args []string, stderr io.Writer) (Options, error) {
	o := Options{}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.NATS, "nats", "nats://127.0.0.1:4222", "URL of the coordinator's NATS server: nats://, tls://, or ws:// and wss:// through Apache (wss://session-host/nats); several, comma-separated, for failover")
	fs.StringVar(&o.Server, "server", "", "the simulationServers entry this agent speaks for, as configured (host/port or host:port); required")
	fs.DurationVar(&o.Interval, "interval", time.Second, "time between heartbeats, at most 60s")
	fs.StringVar(&o.Probe, "probe", "", "URL that must answer for the simulation server to count as up, or 'off'; default http://127.0.0.1:<port of -server>/load")
	fs.IntVar(&o.MaxSessions, "max-sessions", 100, "sessions the simulation server accepts (its maxConnections)")
	fs.StringVar(&o.Processes, "process", strings.Join(agent.DefaultProcessNames, ","), "comma-separated process names counted as running simulations")
	fs.StringVar(&o.SimConfig, "simulation-config", "", "the simulation server's own configuration (webots-server's config/simulation/NAME.json): its allowedRepositories, blockedRepositories, docker, shareIdleTime go into heartbeats, its maxConnections is the default of -max-sessions; re-read when it changes. Default: the only .json file of ~/webots-server/config/simulation/, where webots-server's setup guide puts it, if there is exactly one; 'off' for none")
	fs.StringVar(&o.DrainFile, "drain-file", "", "creating this file drains the server (no new session), removing it undrains; the latest of a signal and a file change wins")
	fs.StringVar(&o.Prefix, "prefix", schema.DefaultPrefix, "first token of the NATS subjects")
	fs.StringVar(&o.User, "user", "", "NATS user name")
	fs.StringVar(&o.Password, "password", "", "NATS password (prefer the environment variable SIMGATE_PASSWORD)")
	fs.StringVar(&o.Token, "token", "", "NATS token (prefer SIMGATE_TOKEN)")
	fs.StringVar(&o.NkeyFile, "nkey", "", "file holding this agent's NATS nkey seed (SU…); the coordinator lists its public key")
	fs.StringVar(&o.CA, "ca", "", "CA certificate file that signs the NATS server's TLS certificate")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.Version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: agent -server ENTRY [flags]

Measures this machine (CPU, RAM, swap, NVIDIA GPU) and publishes a heartbeat
for one simulation server every interval. Every flag may also be set by an
environment variable: SIMGATE_ and the flag name in capitals, '-' as '_'
(SIMGATE_SERVER, SIMGATE_MAX_SESSIONS). Flags win over the environment.
SIGUSR1 puts the server in draining, SIGUSR2 takes it out.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok && !given[f.Name] && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	// Set by flag or by the environment (fs.Set marks it too).
	fs.Visit(func(f *flag.Flag) { o.maxSessionsSet = o.maxSessionsSet || f.Name == "max-sessions" })
	if o.NkeyFile == "" {
		o.NkeyFile = credentialNkey()
	}
	if o.Version {
		return o, nil
	}
	if err := o.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return o, fmt.Errorf("-log-level: %w", err)
	}
	switch {
	case o.Server == "":
		return o, errors.New("-server is required: the simulationServers entry this agent speaks for")
	case config.CheckEntry(o.Server) != nil:
		return o, fmt.Errorf("-server %q: %v", o.Server, config.CheckEntry(o.Server))
	case o.Interval <= 0 || o.Interval > 60*time.Second:
		return o, fmt.Errorf("-interval %v: must be in (0, 60s]", o.Interval)
	case o.MaxSessions < 1:
		return o, fmt.Errorf("-max-sessions %d: must be at least 1", o.MaxSessions)
	}
	switch o.SimConfig {
	case "off":
		o.SimConfig = ""
	case "":
		o.SimConfig = DefaultSimulationConfig()
	}
	if err := CheckNATSURLs(o.NATS); err != nil {
		return o, fmt.Errorf("-nats (or %s) %q: %w", EnvName("nats"), o.NATS, err)
	}
	if o.Probe == "" {
		o.Probe = agent.DefaultProbeURL(o.Server)
	}
	if err := checkProbe(o.Probe); err != nil {
		return o, fmt.Errorf("-probe (or %s) %q: %w", EnvName("probe"), o.Probe, err)
	}
	return o, nil
}

// DefaultSimulationConfig is the simulation server's configuration where
// webots-server's setup guide puts it: the only .json file of
// ~/webots-server/config/simulation/ (server.sh start NAME reads NAME.json
// there); "" when there is none or more than one.
func DefaultSimulationConfig() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	files, _ := filepath.Glob(filepath.Join(home, "webots-server", "config", "simulation", "*.json"))
	if len(files) != 1 {
		return ""
	}
	return files[0]
}

// CheckNATSURLs checks a comma-separated list of NATS server URLs.
func CheckNATSURLs(list string) error {
	ws, tcp := false, false
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if !strings.Contains(raw, "://") {
			return fmt.Errorf("%q has no scheme: write nats://%s (tls://%s with nats.tls, wss://host/nats through Apache)", raw, raw, raw)
		}
		u, err := url.Parse(raw)
		if err != nil {
			return err
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%q: want nats://host:port, tls://host:port, ws://host:port or wss://host/path", raw)
		}
		if u.Host == "" {
			return fmt.Errorf("%q names no host", raw)
		}
		if u.Scheme == "ws" || u.Scheme == "wss" {
			ws = true
		} else {
			tcp = true
		}
	}
	if ws && tcp {
		return errors.New("a list is all WebSocket URLs (ws://, wss://) or none: NATS cannot fail over between the two")
	}
	return nil
}

func checkProbe(probe string) error {
	if probe == "off" {
		return nil
	}
	u, err := url.Parse(probe)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL (http://127.0.0.1:2000/load), or off")
	}
	return nil
}

// pingEvery is the agent's ping period for a heartbeat interval: half of
// it, at least 500 ms (a coordinator slow to answer for a moment under load
// is not a dead one).
func pingEvery(interval time.Duration) time.Duration { return max(interval/2, 500*time.Millisecond) }

// connectTimeout bounds one connection attempt, handshake and login included.
const connectTimeout = 5 * time.Second

// Build connects to NATS (retrying forever in the background) and builds the agent.
func Build(ctx context.Context, o Options, log *slog.Logger) (*nats.Conn, *agent.Agent, error) {
	var lastFail, lastDenied time.Time // only the connection's callback goroutine touches them
	nopts := []nats.Option{
		nats.Name(o.Server), // the coordinator tells which server a closed connection took with it
		// A coordinator verifying many bcrypt passwords after its restart
		// answers late: wait for it (it remembers a verified password, so
		// a retry after a time-out costs it nothing), rather than give up
		// at nats.go's 2 s and start the handshake again.
		nats.Timeout(connectTimeout),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// A coordinator that dies: the next one on the list (or that its
		// cluster advertised) at once, each one again after 250 ms at most.
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 250*time.Millisecond),
		// A coordinator's host that vanishes without closing the connection,
		// or a member that hangs (SIGSTOP, a frozen machine), is noticed
		// after two unanswered pings, half an interval apart: well inside
		// the 3 intervals after which the other members judge this server
		// silent, so that failing over to one of them costs no false down.
		nats.PingInterval(pingEvery(o.Interval)),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // a stop of ours: the leaving heartbeat said so
			}
			log.Warn("disconnected from NATS; reconnecting", "error", err)
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			// Retries come every second or faster: say it once per 10 s, with what to change.
			if now := time.Now(); now.Sub(lastFail) >= 10*time.Second {
				lastFail = now
				what, fix := connectHint(err, o, lastURL(nc, o.NATS))
				log.Warn(what+"; retrying", "url", o.NATS, "error", err, "fix", fix)
			}
		}),
		// Replies to this agent (the acknowledgement of its leaving heartbeat)
		// come under an inbox an agent user is allowed to read.
		nats.CustomInboxPrefix(schema.AgentInbox(o.Server)),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				// Every heartbeat would say it: once a minute.
				if now := time.Now(); now.Sub(lastDenied) >= time.Minute {
					lastDenied = now
					log.Error("the coordinator refuses this agent's heartbeats for "+o.Server, "error", err,
						"fix", serverHint(o.Server))
				}
				return
			}
			log.Warn("NATS error", "error", err)
		}),
	}
	if o.User != "" {
		nopts = append(nopts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		nopts = append(nopts, nats.Token(o.Token))
	}
	if o.NkeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NkeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("-nkey %s: %w", o.NkeyFile, err)
		}
		nopts = append(nopts, opt)
	}
	if o.CA != "" {
		nopts = append(nopts, nats.RootCAs(o.CA))
	}
	nc, err := nats.Connect(o.NATS, nopts...)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS %s: %w", o.NATS, err)
	}
	var policy *agent.SimulationConfig
	if o.SimConfig != "" {
		log.Info("reading the simulation server's configuration for its repository policy", "file", o.SimConfig)
		if policy, err = agent.NewSimulationConfig(o.SimConfig, log); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("-simulation-config: %w", err)
		}
		if n := policy.MaxConnections(); n > 0 && !o.maxSessionsSet {
			o.MaxSessions = n
		}
		if port := policy.Port(); port > 0 && !strings.HasSuffix(o.Server, fmt.Sprintf("/%d", port)) && !strings.HasSuffix(o.Server, fmt.Sprintf(":%d", port)) {
			log.Warn("the simulation server's port differs from -server's", "file", o.SimConfig, "port", port, "server", o.Server)
		}
	}
	cs := agent.DefaultCollectors(ctx, o.Probe, strings.Split(o.Processes, ","), log)
	a := agent.New(agent.Options{
		Server: o.Server, Interval: o.Interval, Collectors: cs, MaxSessions: o.MaxSessions,
		Subjects: schema.Subjects{Prefix: o.Prefix}, Logger: log, DrainFile: o.DrainFile, SimulationConfig: policy,
	})
	return nc, a, nil
}
