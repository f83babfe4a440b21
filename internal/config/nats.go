package config

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"github.com/simgate/simgate/internal/domain"
)

// validateNATSAuth checks nats.tls and nats.users; configured holds the
// simulationServers entries.
func (c *Config) validateNATSAuth(configured map[string]bool) error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	n := &c.NATS
	if (n.TLSCert == "") != (n.TLSKey == "") {
		return bad("nats.tls", "cert and key go together: set both or neither")
	}
	if n.TLSCert != "" {
		for _, f := range []struct{ key, path string }{{"nats.tls.cert", n.TLSCert}, {"nats.tls.key", n.TLSKey}} {
			if fi, err := os.Stat(f.path); err != nil || !fi.Mode().IsRegular() {
				return bad(f.key, "%q is not a readable regular file", f.path)
			}
		}
		if _, err := tls.LoadX509KeyPair(n.TLSCert, n.TLSKey); err != nil {
			return bad("nats.tls.cert", "cannot load the certificate and key: %v", err)
		}
	}
	// Two entries on one node would share a subject: an agent bound to one
	// could publish for the other.
	nodes := map[string]string{}
	claim := func(key, entry string) error {
		if other, ok := nodes[domain.Node(entry)]; ok && other != entry {
			return bad(key, "%q and %q share the NATS subject token %q: rename one", other, entry, domain.Node(entry))
		}
		nodes[domain.Node(entry)] = entry
		return nil
	}
	for _, s := range c.SimulationServers {
		if err := claim("simulationServers", s); err != nil {
			return err
		}
	}
	seen := seenUsers{names: map[string]bool{}, tokens: map[string]bool{}, keys: map[string]bool{}}
	for i := range n.Users {
		if err := seen.check(i, &n.Users[i], configured, claim); err != nil {
			return err
		}
	}
	// The WebSocket listener follows the same rules as the TCP one.
	listeners := []struct{ key, addr string }{{"nats.listen", n.Listen}}
	if n.Websocket != "" {
		if err := checkListen(n.Websocket); err != nil {
			return bad("nats.websocket.listen", "%v", err)
		}
		// Apache forwards to it (deploy/apache-simgate.conf's /nats, and the
		// seed's generic ^/(\d*)/(.*)$ rule reaches any local port): even on
		// loopback it is on the Internet, so nobody may use it anonymously.
		if len(n.Users) == 0 {
			return bad("nats.websocket.listen", "%q needs NATS authentication (nats.users): Apache forwards it to the Internet, where an anonymous client could forge heartbeats and read the farm. Add users (README, Security) or remove nats.websocket", n.Websocket)
		}
		listeners = append(listeners, struct{ key, addr string }{"nats.websocket.listen", n.Websocket})
	}
	if cl := n.Cluster; cl != nil {
		if err := cl.validate(); err != nil {
			return err
		}
		listeners = append(listeners, struct{ key, addr string }{"nats.cluster.listen", cl.Listen})
		for _, r := range cl.Routes {
			if u, _ := url.Parse(r); !loopback(u.Host) && len(n.Users) == 0 {
				return bad("nats.cluster.routes", "%q is beyond loopback, which requires NATS authentication (nats.users): routes between members authenticate with a secret derived from the users", r)
			}
		}
	}
	for _, l := range listeners {
		if loopback(l.addr) {
			continue
		}
		if len(n.Users) == 0 {
			return bad(l.key, "%q listens beyond loopback, which requires NATS authentication (nats.users); simgate refuses to let anyone on the network publish heartbeats. Listen on 127.0.0.1 or configure users", l.addr)
		}
		if n.TLSCert == "" {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s %q is reachable from the network without TLS: NATS passwords and tokens cross it in clear; set nats.tls", l.key, l.addr))
		}
	}
	return nil
}

// seenUsers are the user names, tokens and nkeys of the users checked so
// far: each may be given once.
type seenUsers struct{ names, tokens, keys map[string]bool }

// check checks nats.users[i]; claim records a server entry's node.
func (s *seenUsers) check(i int, u *NATSUser, configured map[string]bool, claim func(key, entry string) error) error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	key := fmt.Sprintf("nats.users[%d]", i)
	ways := 0
	for _, set := range []bool{u.Password != "", u.Token != "", u.Nkey != ""} {
		if set {
			ways++
		}
	}
	if ways != 1 {
		return bad(key, "give exactly one of password (with user), token or nkey")
	}
	switch {
	case u.Password != "":
		if u.User == "" {
			return bad(key+".user", "a password needs a user name")
		}
		if strings.HasPrefix(u.Password, "$2") {
			if _, err := bcrypt.Cost([]byte(u.Password)); err != nil {
				return bad(key+".password", "starts like a bcrypt hash but is not one: %v", err)
			}
		}
	case u.Token != "":
		if len(u.Token) < 16 {
			return bad(key+".token", "is %d characters; use at least 16 random ones", len(u.Token))
		}
		if s.tokens[u.Token] {
			return bad(key+".token", "is the token of another user")
		}
		s.tokens[u.Token] = true
	case u.Nkey != "":
		if !nkeys.IsValidPublicUserKey(u.Nkey) {
			return bad(key+".nkey", "is not a public user nkey (U…; `nk -gen user -pubout` makes one)")
		}
		if s.keys[u.Nkey] {
			return bad(key+".nkey", "is the nkey of another user")
		}
		s.keys[u.Nkey] = true
	}
	if u.User != "" {
		if strings.HasPrefix(u.User, "simgate-") {
			return bad(key+".user", "names starting with simgate- are the coordinator's own")
		}
		if s.names[u.User] {
			return bad(key+".user", "%q is listed twice", u.User)
		}
		s.names[u.User] = true
	}
	switch u.Role {
	case domain.RoleAgent:
		if len(u.Servers) == 0 {
			return bad(key+".servers", "an agent must be bound to the servers it speaks for")
		}
		for _, s := range u.Servers {
			if err := CheckEntry(s); err != nil {
				return bad(key+".servers", "%q: %v", s, err)
			}
			if len(configured) > 0 && !configured[s] {
				return bad(key+".servers", "%q is not one of simulationServers", s)
			}
			if err := claim(key+".servers", s); err != nil {
				return err
			}
		}
	case domain.RoleMonitor, domain.RoleAdmin, domain.RoleSystem:
		if u.Role == domain.RoleAdmin && u.Token != "" {
			return bad(key+".token", "an admin is named in the drains it makes (drained by <user>): give it a user and password, or an nkey")
		}
		if len(u.Servers) > 0 {
			return bad(key+".servers", "a %s reads every server and is bound to none", u.Role)
		}
	default:
		return bad(key+".role", "want %q, %q, %q or %q, got %q", domain.RoleAgent, domain.RoleMonitor, domain.RoleAdmin, domain.RoleSystem, u.Role)
	}
	return nil
}

func (cl *Cluster) validate() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if !validToken(cl.Name) {
		return bad("nats.cluster.name", "%q must be one NATS token of letters, digits, '_' or '-'", cl.Name)
	}
	if cl.Listen == "" {
		return bad("nats.cluster.listen", "is required: the host:port the other members' routes connect to")
	}
	if err := checkListen(cl.Listen); err != nil {
		return bad("nats.cluster.listen", "%v", err)
	}
	if len(cl.Routes) == 0 {
		return bad("nats.cluster.routes", "is required: the nats-route://host:port of the members (this one's may be listed, so that every member shares one list)")
	}
	for _, r := range cl.Routes {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "nats-route" && u.Scheme != "nats") || u.Port() == "" || u.Hostname() == "" || u.User != nil {
			return bad("nats.cluster.routes", "%q is not nats-route://host:port", r)
		}
		if p, err := strconv.Atoi(u.Port()); err != nil || p <= 0 || p > 65535 {
			return bad("nats.cluster.routes", "%q: port is not between 1 and 65535", r)
		}
	}
	return nil
}

// RouteSecret is the password routes between members present: derived from
// the users' credentials, which every member's file lists alike, so that a
// cluster needs no secret of its own. "" without users (loopback only).
func (n *NATS) RouteSecret() string {
	if len(n.Users) == 0 {
		return ""
	}
	h := sha256.New()
	h.Write([]byte("simgate route secret v1\x00"))
	for _, u := range n.Users {
		for _, f := range []string{u.User, u.Password, u.Token, u.Nkey, u.Role} {
			h.Write([]byte(f))
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// secretKey names a key of this configuration that holds a secret, or "".
func (c *Config) secretKey() string {
	if c.MailSenderPassword != "" {
		return "mailSenderPassword"
	}
	for i, u := range c.NATS.Users {
		if u.Password != "" && !strings.HasPrefix(u.Password, "$2") {
			return fmt.Sprintf("nats.users[%d].password", i)
		}
		if u.Token != "" {
			return fmt.Sprintf("nats.users[%d].token", i)
		}
	}
	return ""
}

// BoundServers is every entry an agent user is bound to, in order, once.
func (n *NATS) BoundServers() []string {
	var out []string
	for _, u := range n.Users {
		for _, s := range u.Servers {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// NATSUsers is the configured NATS users (nats.users).
type NATSUsers []NATSUser

// AdminNamed names the admin behind a NATS user (a user name, or an nkey),
// as Nats-Request-Info carries it; "" when it is no admin.
func (us NATSUsers) AdminNamed(user string) string {
	for _, u := range us {
		if u.Role != domain.RoleAdmin {
			continue
		}
		switch {
		case u.User != "" && u.User == user && u.Password != "":
			return u.User
		case u.Nkey != "" && u.Nkey == user:
			if u.User != "" {
				return u.User
			}
			return "nkey " + u.Nkey
		}
	}
	return ""
}

// AdminPassword is the password of the admin user named user, "" when
// there is none (the check then fails at the same cost).
func (us NATSUsers) AdminPassword(user string) string {
	want := ""
	for _, u := range us {
		if u.Role == domain.RoleAdmin && u.User == user && u.Password != "" {
			want = u.Password
		}
	}
	return want
}

// Passwords is every user's password ("" for users without one), for the
// one password guard of NATS logins and the monitor's HTTP Basic.
func (us NATSUsers) Passwords() []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Password
	}
	return out
}
