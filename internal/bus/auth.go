package bus

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/simgate/simgate/internal/domain"
	"github.com/simgate/simgate/internal/logging"
	"github.com/simgate/simgate/internal/login"
	"github.com/simgate/simgate/internal/schema"
)

// Roles a NATS user can have (domain's).
const (
	RoleAgent   = domain.RoleAgent
	RoleMonitor = domain.RoleMonitor
	RoleAdmin   = domain.RoleAdmin
	RoleSystem  = domain.RoleSystem
)

// CoordinatorInbox is the inbox prefix of the coordinator's own
// connections: no user may subscribe under it (their replies carry the
// coordinators' state).
const CoordinatorInbox = "_SIMGATE_INBOX"

// readPermissions is what a monitor may do, and an admin, and an anonymous
// local client: read every simgate subject, ask the farm's NATS service
// (servers, session, capacity; drain only for admin), read the servers bucket.
func readPermissions(subj schema.Subjects, admin bool) *server.Permissions {
	kv := "KV_" + schema.ServersBucket
	pub := []string{subj.API("servers"), subj.API("session"), subj.API("capacity"), "$SRV.>", "_INBOX.>",
		"$JS.API.INFO", "$JS.API.STREAM.INFO." + kv, "$JS.API.STREAM.NAMES",
		"$JS.API.CONSUMER.CREATE." + kv, "$JS.API.CONSUMER.CREATE." + kv + ".>",
		"$JS.API.CONSUMER.DELETE." + kv + ".>", "$JS.API.CONSUMER.INFO." + kv + ".>",
		"$JS.API.DIRECT.GET." + kv, "$JS.API.DIRECT.GET." + kv + ".>", "$JS.API.STREAM.MSG.GET." + kv,
		"$JS.FC." + kv + ".>", "$JS.ACK." + kv + ".>"}
	if admin {
		pub = append(pub, subj.APIAll())
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{subj.Prefix + ".>", "_INBOX.>"}},
	}
}

// User is one NATS user of the embedded server. Exactly one of Password
// (with Name), Token or Nkey identifies it. A Password that starts with "$2"
// is a bcrypt hash.
type User struct {
	Name     string // user name; for a token or nkey user, a label in logs
	Password string
	Token    string
	Nkey     string // public user nkey ("U…"); the client signs the server's nonce
	Role     string
	Servers  []string // the entries an agent speaks for
}

// label names the user in logs, never with its secret.
func (u *User) label() string {
	switch {
	case u.Name != "":
		return u.Name
	case u.Nkey != "":
		return "nkey " + u.Nkey
	}
	return "token user"
}

// internalSubjects are JetStream's and the servers' own: no configured or
// anonymous user may read them (the coordinators' state is there).
var internalSubjects = []string{"$JS.>", "$KV.>", "$NRG.>", "$JSC.>", "$SYS.>", CoordinatorInbox + ".>", "_simgate.>"}

// systemDenied is what a system user may not publish: what the servers
// themselves say (connect, disconnect, shutdown advisories), and requests
// that act on other clients or the server (kick, lame duck, reload, claims).
var systemDenied = []string{"$SYS.ACCOUNT.>", "$SYS.SERVER.>", "$SYS.REQ.SERVER.*.KICK", "$SYS.REQ.SERVER.*.LDM",
	"$SYS.REQ.SERVER.*.RELOAD", "$SYS.REQ.CLAIMS.>", "$SYS.REQ.ACCOUNT.*.CLAIMS.>"}

// authenticator decides every connection to the embedded server: the
// coordinator's own in-process users, then the configured users, then
// (only when no user is configured) anyone, as an anonymous agent.
type authenticator struct {
	internal map[string]internalUser
	byName   map[string]*authUser
	byToken  map[string]*authUser
	byNkey   map[string]*authUser
	anon     *server.User    // nil when authentication is on
	claimed  map[string]bool // server entries: only an agent bound to one may name its connection so
	log      *slog.Logger
	throttle *logging.Throttle
	// guard checks passwords: bcrypt once per secret, bounded at once,
	// failures backed off per address and user.
	guard *login.Guard
	// trusted are the proxies, besides loopback, whose forwarded address
	// names a WebSocket client (ServerOptions.TrustedProxies).
	trusted domain.Proxies
	// away: this member sends agents to the others (it reaches no
	// majority of its cluster: Server.SendAgentsAway).
	away atomic.Bool
}

type internalUser struct {
	password string
	user     *server.User
}

type authUser struct {
	u    User
	user *server.User // account and permissions registered on the connection
}

func newAuthenticator(o ServerOptions, app, sys, api *server.Account, internal map[string]string, budget *logging.Budget) (*authenticator, error) {
	a := &authenticator{
		internal: map[string]internalUser{},
		byName:   map[string]*authUser{},
		byToken:  map[string]*authUser{},
		byNkey:   map[string]*authUser{},
		claimed:  map[string]bool{},
		log:      o.Logger,
		throttle: logging.NewThrottle(time.Minute, logging.ClientKeys).Within(budget),
		guard:    o.Guard,
		trusted:  domain.ParseProxies(o.TrustedProxies),
	}
	if a.guard == nil {
		secrets := make([]string, len(o.Users))
		for i, u := range o.Users {
			secrets[i] = u.Password
		}
		a.guard = login.New(secrets)
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	for name, pass := range internal {
		acc := app
		switch name {
		case sysUser:
			acc = sys
		case apiUser:
			acc = api
		}
		a.internal[name] = internalUser{password: pass, user: &server.User{Username: name, Account: acc}}
	}
	for _, s := range o.Servers {
		a.claimed[s] = true
	}
	subj := o.Subjects
	for i := range o.Users {
		u := o.Users[i]
		var perms *server.Permissions
		switch u.Role {
		case RoleAgent:
			perms = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{}},
				Subscribe: &server.SubjectPermission{Allow: []string{}},
			}
			for _, s := range u.Servers {
				a.claimed[s] = true
				perms.Publish.Allow = append(perms.Publish.Allow, subj.Load(s))
				perms.Subscribe.Allow = append(perms.Subscribe.Allow, schema.AgentInbox(s)+".>")
			}
		case RoleMonitor, RoleAdmin:
			perms = readPermissions(subj, u.Role == RoleAdmin)
		case RoleSystem:
			// The system account for nats server list|ping|report, but not
			// the advisories the intake trusts (a forged DISCONNECT marks a
			// healthy server down) nor the requests that act on clients.
			perms = &server.Permissions{Publish: &server.SubjectPermission{Deny: systemDenied}}
		default:
			return nil, fmt.Errorf("NATS user %s: role %q is not one of %q, %q, %q, %q", u.label(), u.Role,
				RoleAgent, RoleMonitor, RoleAdmin, RoleSystem)
		}
		acc := app
		if u.Role == RoleSystem {
			acc = sys
		}
		au := &authUser{u: u, user: &server.User{Username: u.label(), Account: acc, Permissions: perms}}
		switch {
		case u.Nkey != "":
			if !nkeys.IsValidPublicUserKey(u.Nkey) {
				return nil, fmt.Errorf("NATS user %s: not a public user nkey", u.label())
			}
			a.byNkey[u.Nkey] = au
		case u.Token != "":
			a.byToken[u.Token] = au
		case u.Name != "" && u.Password != "":
			if _, ok := a.internal[u.Name]; ok {
				return nil, fmt.Errorf("NATS user name %q is reserved", u.Name)
			}
			a.byName[u.Name] = au
		default:
			return nil, fmt.Errorf("NATS user %s: needs a user name and password, a token or an nkey", u.label())
		}
	}
	if len(o.Users) == 0 {
		// Loopback only (the configuration refuses otherwise): anyone on this
		// machine may publish heartbeats, but not events.
		// They may not publish events or bookings, nor reach the JetStream
		// API that holds the coordinators' state (pending mails).
		read := readPermissions(subj, false)
		a.anon = &server.User{Username: anonUser, Account: app, Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: append([]string{subj.LoadAll()}, read.Publish.Allow...)},
			Subscribe: &server.SubjectPermission{Deny: internalSubjects},
		}}
	}
	return a, nil
}

// bind swaps the accounts users were built with for the server's registered ones.
func (a *authenticator) bind(registered map[*server.Account]*server.Account) {
	swap := func(u *server.User) {
		if r, ok := registered[u.Account]; ok {
			u.Account = r
		}
	}
	for _, iu := range a.internal {
		swap(iu.user)
	}
	for _, m := range []map[string]*authUser{a.byName, a.byToken, a.byNkey} {
		for _, au := range m {
			swap(au.user)
		}
	}
	if a.anon != nil {
		swap(a.anon)
	}
}

// needsNonce says whether the server must send a nonce for nkey users to sign.
func (a *authenticator) needsNonce() bool { return len(a.byNkey) > 0 }

// Check implements server.Authentication.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if iu, ok := a.internal[o.Username]; ok {
		if o.Password != "" && subtle.ConstantTimeCompare([]byte(o.Password), []byte(iu.password)) == 1 {
			c.RegisterUser(iu.user)
			return true
		}
		return a.refuse(c, "wrong password for an internal user")
	}
	var au *authUser
	host := a.clientHost(c)
	switch {
	case o.Nkey != "":
		// A signature cannot be guessed and costs microseconds to check:
		// a configured nkey is never locked out by others' bad signatures
		// (issue 31: the real nkey agent got in 0 of 163 times); only an
		// address that keeps failing waits.
		if a.guard.LimitedAddr(host) {
			return a.refuse(c, login.Limited.String())
		}
		au = a.byNkey[o.Nkey]
		if au == nil {
			a.guard.Refused(host, "")
			return a.refuse(c, "unknown nkey "+o.Nkey)
		}
		if !verifyNonce(o.Nkey, o.Sig, c.GetNonce()) {
			a.guard.Refused(host, "")
			return a.refuse(c, "nkey signature does not verify")
		}
	case o.Token != "":
		// Tokens are at least 16 characters: as for nkeys, only the
		// address that keeps failing waits, never every token user at it.
		if a.guard.LimitedAddr(host) {
			return a.refuse(c, login.Limited.String())
		}
		for tok, u := range a.byToken {
			if subtle.ConstantTimeCompare([]byte(o.Token), []byte(tok)) == 1 {
				au = u
			}
		}
		if au == nil {
			a.guard.Refused(host, "")
			return a.refuse(c, "unknown token")
		}
	case o.Username != "":
		want := ""
		if au = a.byName[o.Username]; au != nil {
			want = au.u.Password
		}
		switch out := a.guard.Check(host, o.Username, want, o.Password); out {
		case login.OK:
		case login.Limited:
			return a.refuse(c, fmt.Sprintf("%s (user %q)", out, o.Username))
		default:
			return a.refuse(c, fmt.Sprintf("wrong user name or password (user %q)", o.Username))
		}
	default:
		if a.anon == nil {
			return a.refuse(c, "no credentials")
		}
		if a.away.Load() && a.claimed[o.Name] {
			return a.refuse(c, awayReason)
		}
		// Without authentication (loopback only) nothing can prove who
		// speaks for a server: any local connection may take its name.
		c.RegisterUser(a.anon)
		return true
	}
	// A connection named after a server entry marks that server down when it
	// closes: only an agent bound to the entry may take its name.
	if a.claimed[o.Name] && !au.bound(o.Name) {
		return a.refuse(c, fmt.Sprintf("user %s may not name its connection %q: it is not bound to that server", au.u.label(), o.Name))
	}
	if a.away.Load() && a.claimed[o.Name] {
		return a.refuse(c, awayReason)
	}
	c.RegisterUser(au.user)
	return true
}

// awayReason is why an agent is refused by a member without a majority.
const awayReason = "this member reaches no majority of its cluster: an agent connects to another member"

func (u *authUser) bound(entry string) bool {
	if u.u.Role != RoleAgent {
		return false
	}
	for _, s := range u.u.Servers {
		if s == entry {
			return true
		}
	}
	return false
}

// refuse logs a refused connection, the first of a reason and host at
// once and then one line a minute with the count held back: 394 wrong
// passwords a second must not turn the log over.
func (a *authenticator) refuse(c server.ClientAuthentication, why string) bool {
	if c.Kind() == server.CLIENT {
		remote := addr(c)
		allow := a.throttle.Allow
		if o := c.GetOpts(); a.byName[o.Username] != nil || a.byNkey[o.Nkey] != nil {
			// A configured user refused (an agent with a stale password):
			// its line survives any flood of made-up names.
			allow = a.throttle.AllowKnown
		}
		if held, ok := allow(why+"|"+a.clientHost(c), time.Now()); ok {
			a.log.Warn("NATS connection refused", "remote", remote, "name", c.GetOpts().Name, "reason", why,
				"refused_since_last_line", held)
		}
	}
	return false
}

// clientHost is the host a client connects from, "" in-process.
//
// A WebSocket client that came through Apache (the peer is loopback, or a
// trusted proxy: the Apache in front of a cluster's members) is told by
// the address Apache forwarded (X-Forwarded-For, which nats-server keeps
// in the connection's name, "ip/peer - cid:N", when it holds one address:
// the README's rules drop any the client sent): every agent and every
// guesser behind Apache came from its address, and a guesser's failures
// locked the real agent out (issue 31).
func (a *authenticator) clientHost(c server.ClientAuthentication) string {
	ra := c.RemoteAddress()
	if ra == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(ra.String())
	if err != nil {
		return ra.String()
	}
	if ip, err := netip.ParseAddr(host); err == nil && a.isTrusted(ip.Unmap()) {
		if fwd := forwarded(c); fwd != "" {
			return fwd
		}
	}
	return host
}

// isTrusted says whether ip is a proxy whose forwarded address is believed.
func (a *authenticator) isTrusted(ip netip.Addr) bool { return ip.IsLoopback() || a.trusted.Trust(ip) }

// forwarded is the address a proxy forwarded for a WebSocket client, ""
// for none.
func forwarded(c server.ClientAuthentication) string {
	s, ok := c.(fmt.Stringer)
	if !ok {
		return ""
	}
	ip, _, found := strings.Cut(s.String(), "/")
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	if !found || net.ParseIP(ip) == nil {
		return ""
	}
	return ip
}

func addr(c server.ClientAuthentication) string {
	if ra := c.RemoteAddress(); ra != nil {
		if fwd := forwarded(c); fwd != "" {
			return fwd + " via " + ra.String()
		}
		return ra.String()
	}
	return "in-process"
}

// verifyNonce checks the client's signature of the server's nonce.
func verifyNonce(pub, sig string, nonce []byte) bool {
	if len(nonce) == 0 || sig == "" {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		if raw, err = base64.StdEncoding.DecodeString(sig); err != nil {
			return false
		}
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return false
	}
	return kp.Verify(nonce, raw) == nil
}
