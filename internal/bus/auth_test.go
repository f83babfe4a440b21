package bus

import (
	"errors"
	"github.com/nats-io/nats-server/v2/server"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"

	"github.com/simgate/simgate/internal/domain"
	"github.com/simgate/simgate/internal/login"
	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/testutil"
)

const (
	serverA = "a.test/2000"
	serverB = "b.test/2000"
	serverC = "c.test/2000"
	tokenB  = "token-of-agent-b-0123456789"
)

// authFarm is an embedded server with one user of every kind, over TLS.
type authFarm struct {
	srv    *Server
	ca     string
	nkey   nkeys.KeyPair
	denied chan string
}

func startAuthServer(t *testing.T) *authFarm {
	t.Helper()
	cert, key := testutil.TLSFiles(t)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	hash, err := bcrypt.GenerateFromPassword([]byte("ops-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f := &authFarm{ca: cert, nkey: kp, denied: make(chan string, 16)}
	f.srv, err = StartServer(ServerOptions{
		Listen: "127.0.0.1:0", Subjects: schema.Subjects{Prefix: "simgate"},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Servers: []string{serverA, serverB, serverC},
		TLSCert: cert, TLSKey: key,
		Users: []User{
			{Name: "agent-a", Password: "secret-a", Role: RoleAgent, Servers: []string{serverA}},
			{Token: tokenB, Role: RoleAgent, Servers: []string{serverB}},
			{Nkey: pub, Role: RoleAgent, Servers: []string{serverC}},
			{Name: "ops", Password: string(hash), Role: RoleMonitor},
		},
		Denied: func(subject string) { f.denied <- subject },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.srv.Shutdown)
	return f
}

// connect dials the TLS listener as a remote client would.
func (f *authFarm) connect(name string, opts ...nats.Option) (*nats.Conn, error) {
	url := strings.Replace(f.srv.ClientURL(), "nats://", "tls://", 1)
	base := []nats.Option{nats.Name(name), nats.RootCAs(f.ca), nats.MaxReconnects(0), nats.Timeout(5 * time.Second)}
	return nats.Connect(url, append(base, opts...)...)
}

func (f *authFarm) nkeyOpt() nats.Option {
	pub, _ := f.nkey.PublicKey()
	return nats.Nkey(pub, f.nkey.Sign)
}

func TestAuthRefusesWhoItShould(t *testing.T) {
	f := startAuthServer(t)
	wrongKP, _ := nkeys.CreateUser()
	wrongPub, _ := wrongKP.PublicKey()
	for _, tc := range []struct {
		name   string
		conn   string
		opts   []nats.Option
		wantOK bool
	}{
		{"anonymous", "", nil, false},
		{"wrong password", serverA, []nats.Option{nats.UserInfo("agent-a", "nope")}, false},
		{"unknown user", "", []nats.Option{nats.UserInfo("mallory", "secret-a")}, false},
		{"internal user guessed", "", []nats.Option{nats.UserInfo(coordUser, "guess")}, false},
		{"wrong token", serverB, []nats.Option{nats.Token("token-of-nobody-0123456789")}, false},
		{"nkey not listed", serverC, []nats.Option{nats.Nkey(wrongPub, wrongKP.Sign)}, false},
		{"nkey signed by another key", serverC, []nats.Option{nats.Nkey(func() string { p, _ := f.nkey.PublicKey(); return p }(), wrongKP.Sign)}, false},
		{"agent naming itself after another server", serverB, []nats.Option{nats.UserInfo("agent-a", "secret-a")}, false},
		{"monitor naming itself after a server", serverA, []nats.Option{nats.UserInfo("ops", "ops-secret")}, false},
		{"password agent", serverA, []nats.Option{nats.UserInfo("agent-a", "secret-a")}, true},
		{"token agent", serverB, []nats.Option{nats.Token(tokenB)}, true},
		{"nkey agent", serverC, []nats.Option{f.nkeyOpt()}, true},
		{"monitor (bcrypt password)", "ops-console", []nats.Option{nats.UserInfo("ops", "ops-secret")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := f.connect(tc.conn, tc.opts...)
			if nc != nil {
				defer nc.Close()
			}
			if tc.wantOK && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.wantOK && err == nil {
				t.Fatal("connected; want refused")
			}
			if !tc.wantOK && !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("refused with %v; want an authorization error", err)
			}
		})
	}
}

func TestAuthTLSNeedsTheCA(t *testing.T) {
	f := startAuthServer(t)
	url := strings.Replace(f.srv.ClientURL(), "nats://", "tls://", 1)
	if nc, err := nats.Connect(url, nats.UserInfo("agent-a", "secret-a"), nats.Name(serverA), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without trusting the CA; want a certificate error")
	}
	plain := f.srv.ClientURL()
	if nc, err := nats.Connect(plain, nats.UserInfo("agent-a", "secret-a"), nats.Name(serverA), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected in clear to a TLS-only listener")
	}
	nc, err := f.connect(serverA, nats.UserInfo("agent-a", "secret-a"))
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
}

// collect subscribes subject on nc and returns the channel messages arrive on.
func collect(t *testing.T, nc *nats.Conn, subject string) (*nats.Subscription, chan *nats.Msg) {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub, ch
}

// asyncErrs captures the errors the server sends a client (permission violations).
func asyncErrs() (nats.Option, chan error) {
	ch := make(chan error, 16)
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { ch <- err }), ch
}

func wantErr(t *testing.T, ch chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Errorf("%s: error %v, want a permissions violation", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s: no permissions violation from the server", what)
	}
}

func TestAuthPermissions(t *testing.T) {
	f := startAuthServer(t)
	subj := schema.Subjects{Prefix: "simgate"}

	// The coordinator's view: every heartbeat that gets through.
	watcher, err := f.srv.Connect("watcher")
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	_, seen := collect(t, watcher, subj.Prefix+".>")

	errOpt, errs := asyncErrs()
	agentA, err := f.connect(serverA, nats.UserInfo("agent-a", "secret-a"), errOpt, nats.CustomInboxPrefix(schema.AgentInbox(serverA)))
	if err != nil {
		t.Fatal(err)
	}
	defer agentA.Close()

	// Its own heartbeat goes through.
	if err := agentA.Publish(subj.Load(serverA), []byte("own")); err != nil {
		t.Fatal(err)
	}
	if err := agentA.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-seen:
		if m.Subject != subj.Load(serverA) {
			t.Fatalf("got %s", m.Subject)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an agent's own heartbeat did not arrive")
	}

	// Another server's heartbeat and an event are refused by the server.
	for _, s := range []string{subj.Load(serverB), subj.Event(schema.EventDown, serverB), "elsewhere"} {
		if err := agentA.Publish(s, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		wantErr(t, errs, "agent publishing on "+s)
	}
	select {
	case got := <-f.denied:
		if got != subj.Load(serverB) {
			t.Errorf("first denied subject %q, want %q", got, subj.Load(serverB))
		}
	case <-time.After(5 * time.Second):
		t.Error("the refused heartbeat was not reported for counting")
	}
	// Reading others' heartbeats is refused.
	if _, err := agentA.SubscribeSync(subj.LoadAll()); err != nil {
		t.Fatal(err)
	}
	wantErr(t, errs, "agent subscribing to every heartbeat")

	// Its leaving heartbeat can be acknowledged: its inbox is readable.
	reply, err := watcher.Subscribe(subj.Load(serverA), func(m *nats.Msg) { _ = m.Respond([]byte("ok")) })
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := agentA.Request(subj.Load(serverA), []byte("leaving"), 5*time.Second); err != nil || string(m.Data) != "ok" {
		t.Errorf("acknowledged request: %v %v", m, err)
	}
	_ = reply.Unsubscribe()

	// A monitor reads everything and publishes nothing.
	monErrOpt, monErrs := asyncErrs()
	mon, err := f.connect("ops-console", nats.UserInfo("ops", "ops-secret"), monErrOpt)
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	_, monSeen := collect(t, mon, subj.Prefix+".>")
	if err := agentA.Publish(subj.Load(serverA), []byte("seen by ops")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-monSeen:
	case <-time.After(5 * time.Second):
		t.Error("the monitor did not see a heartbeat")
	}
	for _, s := range []string{subj.Load(serverA), subj.Event(schema.EventUp, serverA)} {
		if err := mon.Publish(s, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		wantErr(t, monErrs, "monitor publishing on "+s)
	}
	if err := mon.Publish(subj.API("drain.x"), []byte("")); err != nil {
		t.Fatal(err)
	}
	wantErr(t, monErrs, "monitor asking for a drain")
	// Nor read the coordinators' state: their replies, their bucket.
	for _, s := range []string{CoordinatorInbox + ".>", "$KV.simgate-state.>", "$SYS.>"} {
		if _, err := mon.SubscribeSync(s); err != nil {
			t.Fatal(err)
		}
		wantErr(t, monErrs, "monitor subscribing to "+s)
	}
	if err := mon.Publish("$JS.API.DIRECT.GET.KV_simgate-state.$KV.simgate-state.mail.x", nil); err != nil {
		t.Fatal(err)
	}
	wantErr(t, monErrs, "monitor reading the state bucket")
}

// Without users (loopback), anyone may publish heartbeats but nobody but the
// coordinator publishes events.
func TestAnonymousMayNotPublishEvents(t *testing.T) {
	srv, err := StartServer(ServerOptions{Listen: "127.0.0.1:0", Subjects: schema.Subjects{Prefix: "simgate"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	errOpt, errs := asyncErrs()
	nc := dial(t, srv, "anonymous", errOpt)
	if err := nc.Publish("simgate.event.down.a_test_2000", nil); err != nil {
		t.Fatal(err)
	}
	wantErr(t, errs, "anonymous event")
	coord, err := srv.Connect("coordinator")
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	_, seen := collect(t, coord, "simgate.load.>")
	if err := nc.Publish("simgate.load.a_test_2000", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		t.Error("an anonymous heartbeat did not arrive")
	}
}

// TestLoginsCostTheAttacker: a bcrypt password is verified once, not at
// every reconnect (100 agents reconnecting cost one bcrypt each, once), and
// wrong passwords from one address stop costing verifications after a few.
func TestLoginsCostTheAttacker(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("ops-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := []User{{Name: "ops", Password: string(hash), Role: RoleMonitor}}
	guard := login.New([]string{string(hash)})
	srv, err := StartServer(ServerOptions{
		Listen: "127.0.0.1:0", Subjects: schema.Subjects{Prefix: "simgate"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Users: users, Guard: guard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	dial := func(pass string) error {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("ops", pass), nats.MaxReconnects(0), nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
		}
		return err
	}
	for i := range 20 {
		if err := dial("ops-secret"); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	if n := guard.Hashed(); n != 1 {
		t.Errorf("20 logins with one bcrypt password ran bcrypt %d times, want 1", n)
	}
	for range 50 {
		if err := dial("guess"); err == nil {
			t.Fatal("a wrong password was let in")
		}
	}
	if n := guard.Hashed(); n > 1+login.FreeFailures+1 {
		t.Errorf("50 wrong passwords ran bcrypt %d times, want at most %d", n-1, login.FreeFailures+1)
	}
	// The user is waiting now, even with the right password.
	if err := dial("ops-secret"); err == nil {
		t.Error("the right password was checked during the wait")
	}
}

// TestSystemUserCannotFakeAdvisories: a system user runs nats server
// list|ping|report, but cannot publish the connect/disconnect/shutdown
// advisories the intake trusts, nor kick a client.
func TestSystemUserCannotFakeAdvisories(t *testing.T) {
	srv, err := StartServer(ServerOptions{
		Listen: "127.0.0.1:0", Subjects: schema.Subjects{Prefix: "simgate"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Users:  []User{{Name: "sysop", Password: "sysop-secret", Role: RoleSystem}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	errs := make(chan error, 16)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("sysop", "sysop-secret"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// What nats server ping does still answers.
	if _, err := nc.Request("$SYS.REQ.SERVER.PING", nil, 5*time.Second); err != nil {
		t.Fatalf("server ping: %v", err)
	}
	for _, subj := range []string{"$SYS.ACCOUNT.SIMGATE.DISCONNECT", "$SYS.ACCOUNT.SIMGATE.CONNECT",
		"$SYS.SERVER." + srv.ID() + ".SHUTDOWN", "$SYS.REQ.SERVER." + srv.ID() + ".KICK"} {
		if err := nc.Publish(subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("%s: %v, want a permissions violation", subj, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: published by a system user", subj)
		}
	}
}

// TestUnguessableCredentialsNeverLocked: issue 31. Bad signatures for the
// real nkey agent's public key, and wrong tokens, from the address the real
// agents use (loopback: Apache's, for agents over wss://), do not keep the
// real nkey and token agents out.
func TestUnguessableCredentialsNeverLocked(t *testing.T) {
	f := startAuthServer(t)
	pub, _ := f.nkey.PublicKey()
	forger, _ := nkeys.CreateUser()
	for range 50 {
		if nc, err := f.connect(serverC, nats.Nkey(pub, forger.Sign)); err == nil {
			nc.Close()
			t.Fatal("a forged signature was let in")
		}
		if nc, err := f.connect(serverB, nats.Token("not-the-token-0123456789")); err == nil {
			nc.Close()
			t.Fatal("a wrong token was let in")
		}
	}
	for _, tc := range []struct {
		name, server string
		opt          nats.Option
	}{{"nkey", serverC, f.nkeyOpt()}, {"token", serverB, nats.Token(tokenB)}} {
		nc, err := f.connect(tc.server, tc.opt)
		if err != nil {
			t.Errorf("the real %s agent after 50 failures of others: %v", tc.name, err)
			continue
		}
		nc.Close()
	}
}

// TestForwardedAddressThrottlesTheGuesser: issue 31. Behind the local
// Apache every NATS-over-WebSocket client comes from 127.0.0.1; the
// address Apache forwards tells them apart, so wrong passwords for a real
// agent's user from a guesser's address do not lock the agent out.
func TestForwardedAddressThrottlesTheGuesser(t *testing.T) {
	srv, err := StartServer(ServerOptions{
		Listen: "127.0.0.1:0", Websocket: "127.0.0.1:0", Subjects: schema.Subjects{Prefix: "simgate"},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Servers: []string{serverA},
		Users:   []User{{Name: "agent-a", Password: "secret-a", Role: RoleAgent, Servers: []string{serverA}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	via := func(addr, password string) (*nats.Conn, error) {
		return nats.Connect(srv.WebsocketURL(), nats.Name(serverA), nats.UserInfo("agent-a", password),
			nats.MaxReconnects(0), nats.Timeout(5*time.Second),
			nats.WebSocketConnectionHeaders(http.Header{"X-Forwarded-For": {addr}}))
	}
	for range 40 {
		if nc, err := via("198.51.100.66", "guess"); err == nil {
			nc.Close()
			t.Fatal("a wrong password was let in")
		}
	}
	if nc, err := via("198.51.100.66", "secret-a"); err == nil {
		nc.Close()
		t.Error("the guesser's address was not slowed")
	}
	nc, err := via("198.51.100.7", "secret-a")
	if err != nil {
		t.Fatalf("the real agent, from its own address behind the proxy: %v", err)
	}
	nc.Close()
}

// peer is a client as nats-server shows it to the authenticator: its
// connection's remote address, and its name ("ip/peer - cid:N" when a
// proxy forwarded one address for it).
type peer struct {
	server.ClientAuthentication
	remote, name string
}

func (p peer) RemoteAddress() net.Addr {
	ap := netip.MustParseAddrPort(p.remote)
	return net.TCPAddrFromAddrPort(ap)
}

func (p peer) String() string { return p.name }

// TestTrustedProxyForwards: a WebSocket client is told by the address a
// proxy forwarded when the peer is loopback or a trusted proxy (the
// Apache in front of a cluster's members, on another host); from any other
// peer the forwarded address is not believed.
func TestTrustedProxyForwards(t *testing.T) {
	a := &authenticator{trusted: domain.ParseProxies([]string{"192.0.2.7", "10.9.0.0/16"})}
	for _, tc := range []struct {
		remote, name, want string
	}{
		{"127.0.0.1:40000", "198.51.100.4/127.0.0.1:40000 - cid:5", "198.51.100.4"},
		{"192.0.2.7:40000", "198.51.100.4/192.0.2.7:40000 - cid:5", "198.51.100.4"},
		{"10.9.3.3:40000", "198.51.100.4/10.9.3.3:40000 - cid:5", "198.51.100.4"},
		{"192.0.2.8:40000", "198.51.100.4/192.0.2.8:40000 - cid:5", "192.0.2.8"}, // not a proxy: its own address
		{"192.0.2.7:40000", "192.0.2.7:40000 - cid:5", "192.0.2.7"},              // nothing forwarded
	} {
		if got := a.clientHost(peer{remote: tc.remote, name: tc.name}); got != tc.want {
			t.Errorf("peer %s named %q: client %q, want %q", tc.remote, tc.name, got, tc.want)
		}
	}
}
