package bus

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/logging"
	"github.com/simgate/simgate/internal/schema"
)

// Sink receives what the intake learns. The coordinator's registry is one.
type Sink interface {
	// Heartbeat applies a schema-valid heartbeat; an error drops it (unknown server).
	Heartbeat(hb schema.Heartbeat) error
	// ConnectionLost says that the last NATS connection named entry closed.
	ConnectionLost(entry string)
}

// IntakeOptions configures StartIntake.
type IntakeOptions struct {
	Subjects schema.Subjects
	Sink     Sink
	Logger   *slog.Logger
	// Dropped, when set, is called once per dropped heartbeat with its reason.
	Dropped func(reason string)
	// Received, when set, is called once per heartbeat that reached the sink.
	Received func()
	// LostFor is how long a closed connection's name refuses heartbeats
	// from other connections (default 10 s).
	LostFor time.Duration
	// MemberGone, when set, is told the servers whose agents' connections
	// were on a cluster member that is gone (its shutdown notice, or its
	// routes): their agents are failing over, and their silence is judged
	// from now.
	MemberGone func(entries []string)
	// Peers, when set, is the set of NATS server IDs reachable now (this
	// one and the cluster members its routes reach). The connections of a
	// member that left are forgotten without marking their servers down:
	// their agents fail over to another member, and silence stays the
	// backstop for one that does not.
	Peers func() map[string]bool
	// Quiet, when set, is the NATS server IDs of members whose beats
	// stopped a moment ago (cluster.Peers.Quiet): their routes may stand
	// for seconds more, and the agents on them are being sent away or
	// failing over. While a member is quiet, its agents' servers are told
	// to MemberGone every 250 ms, so that none is judged silent before its
	// agent had the time to move (issue 30: the majority judged one down
	// 0.1 s before its agent's first heartbeat from a new member).
	Quiet func() []string
}

// Intake subscribes to heartbeats and to the server's connection advisories.
type Intake struct {
	o        IntakeOptions
	throttle *logging.Throttle
	app      *nats.Conn
	sys      *nats.Conn
	mu       sync.Mutex         // guards live, conns, lost and held; the Sink is called outside it
	live     map[connKey]string // each open connection's name
	conns    map[string]int     // live connections per client name
	// lost: names whose last connection closed, and when. A heartbeat that
	// overtook its connection's close advisory is dropped for LostFor; then
	// the name is forgotten, so the map stays bounded however many names
	// come and go (the review grew it to 60k names, 222 MB).
	lost map[string]time.Time
	// held: the latest heartbeat per lost name, waiting heldFor for a
	// connection of that name (bounded like lost).
	held map[string]held

	// stalledUntil: closes before it are failovers, not failures (Stalled);
	// guarded by mu.
	stalledUntil time.Time

	drained chan struct{} // closed when the heartbeat connection has closed
	stop    chan struct{} // ends the peer watch
	watched chan struct{} // closed when the peer watch has ended
}

// StartIntake connects to srv in-process and starts delivering to o.Sink.
func StartIntake(srv *Server, o IntakeOptions) (*Intake, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LostFor <= 0 {
		o.LostFor = 10 * time.Second
	}
	in := &Intake{o: o, live: map[connKey]string{}, conns: map[string]int{}, lost: map[string]time.Time{}, held: map[string]held{},
		throttle: logging.NewThrottle(time.Minute, logging.ClientKeys).Within(srv.logBudget)}
	var err error
	if in.sys, err = srv.connectSystem(); err != nil {
		return nil, fmt.Errorf("connecting to the system account: %w", err)
	}
	// One subscription for both advisories: the server emits a connection's
	// CONNECT before its DISCONNECT from one send loop, and one subscription
	// is delivered in order on one goroutine. Two subscriptions would be two
	// goroutines, and a disconnect could be applied before its connect.
	if _, err = in.sys.Subscribe(fmt.Sprintf("$SYS.ACCOUNT.%s.*", appAccount), in.onAdvisory); err != nil {
		in.sys.Close()
		return nil, err
	}
	// A member that shuts down says so first: its agents are about to
	// fail over, not to vanish.
	if _, err = in.sys.Subscribe("$SYS.SERVER.*.SHUTDOWN", in.onShutdown); err != nil {
		in.sys.Close()
		return nil, err
	}
	if err = in.sys.Flush(); err != nil {
		in.sys.Close()
		return nil, err
	}
	in.drained = make(chan struct{})
	if in.app, err = srv.Connect("simgate-coordinator-intake", nats.ClosedHandler(func(*nats.Conn) { close(in.drained) })); err != nil {
		in.sys.Close()
		return nil, err
	}
	sub, err := in.app.Subscribe(o.Subjects.LoadAll(), in.onHeartbeat)
	if err == nil {
		// Heartbeats are small and frequent; let a burst queue rather than be cut.
		err = sub.SetPendingLimits(1<<20, 256<<20)
	}
	if err == nil {
		err = in.app.Flush()
	}
	if err != nil {
		in.Close()
		return nil, err
	}
	in.stop, in.watched = make(chan struct{}), make(chan struct{})
	// Agents that connected before the advisories were subscribed to (they
	// reconnect the moment a restarted coordinator listens), and those of
	// the other members, are learnt from the servers: without them, one
	// same-named connection opening and closing right after a restart read
	// as its server's last, and took 150 of 2,000 healthy servers down.
	in.snapshot()
	go in.janitor()
	return in, nil
}

// snapshot asks every member for the application account's open
// connections (the CONNECT advisories this member missed).
func (in *Intake) snapshot() {
	inbox := nats.NewInbox()
	sub, err := in.sys.SubscribeSync(inbox)
	if err != nil {
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	if in.sys.PublishRequest(fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CONNZ", appAccount), inbox, []byte(`{"limit":100000}`)) != nil {
		return
	}
	want := 1
	if in.o.Peers != nil {
		want = len(in.o.Peers())
	}
	deadline := time.Now().Add(time.Second)
	for got := 0; got < want; got++ {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return
		}
		var resp struct {
			Server server.ServerInfo `json:"server"`
			Data   struct {
				Conns []struct {
					Cid  uint64 `json:"cid"`
					Name string `json:"name"`
				} `json:"connections"`
			} `json:"data"`
		}
		if json.Unmarshal(m.Data, &resp) != nil {
			continue
		}
		in.mu.Lock()
		for _, c := range resp.Data.Conns {
			key := connKey{resp.Server.ID, c.Cid}
			if _, ok := in.live[key]; ok || c.Name == "" {
				continue
			}
			in.live[key] = c.Name
			in.conns[c.Name]++
		}
		in.mu.Unlock()
	}
}

// janitor drops the held heartbeats whose connection never said its name
// (every 50 ms) and, in a cluster, forgets the connections of members no
// longer reachable (every 250 ms).
func (in *Intake) janitor() {
	defer close(in.watched)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var known map[string]bool
	if in.o.Peers != nil {
		known = in.o.Peers()
	}
	for n := 1; ; n++ {
		select {
		case <-in.stop:
			return
		case now := <-t.C:
			in.expireHeld(now)
			if in.o.Peers != nil && n%5 == 0 {
				known = in.watchPeers(known)
				in.graceQuiet()
			}
		}
	}
}

// watchPeers forgets the connections of members no longer reachable and
// learns those of members that joined; it returns the peers now.
func (in *Intake) watchPeers(known map[string]bool) map[string]bool {
	peers := in.o.Peers()
	for id := range peers {
		if !known[id] {
			// A member joined (or this one reached it late): learn its agents.
			in.snapshot()
			break
		}
	}
	in.mu.Lock()
	var gone []string
	for key := range in.live {
		if !peers[key.server] && !slices.Contains(gone, key.server) {
			gone = append(gone, key.server)
		}
	}
	in.mu.Unlock()
	for _, id := range gone {
		in.forgetServer(id, "its routes are gone")
	}
	return peers
}

// graceQuiet tells MemberGone the servers whose agents' connections are
// on a quiet member (Options.Quiet), keeping their connections.
func (in *Intake) graceQuiet() {
	if in.o.Quiet == nil || in.o.MemberGone == nil {
		return
	}
	for _, id := range in.o.Quiet() {
		in.mu.Lock()
		var entries []string
		for key, name := range in.live {
			if key.server == id {
				entries = append(entries, name)
			}
		}
		in.mu.Unlock()
		if len(entries) > 0 {
			in.o.MemberGone(entries)
		}
	}
}

// heldFor is how long a heartbeat for a server whose agent's connection
// closed waits for a new connection named after the server: the new
// connection's CONNECT advisory comes on another path than its first
// heartbeat and may come second (an agent restarted, or nats pub
// --connection-name, which connects, publishes and closes at once).
// One second: the advisory goes through the server's internal send queue,
// which a loaded machine can hold back well past 100 ms.
const heldFor = time.Second

// held is a heartbeat waiting for its connection's name.
type held struct {
	hb schema.Heartbeat
	m  *nats.Msg
	at time.Time
}

// hold keeps a stale heartbeat until heldFor has passed or its server's
// name connects; a newer one replaces it (the older is dropped).
func (in *Intake) hold(hb schema.Heartbeat, m *nats.Msg) {
	in.mu.Lock()
	old, had := in.held[hb.Server]
	if !had && len(in.held) >= maxLost {
		in.mu.Unlock()
		in.dropStale(held{hb: hb, m: m})
		return
	}
	in.held[hb.Server] = held{hb: hb, m: m, at: time.Now()}
	in.mu.Unlock()
	if had {
		in.dropStale(old)
	}
}

func (in *Intake) expireHeld(now time.Time) {
	var expired []held
	in.mu.Lock()
	for name, h := range in.held {
		if now.Sub(h.at) >= heldFor {
			expired = append(expired, h)
			delete(in.held, name)
		}
	}
	in.mu.Unlock()
	for _, h := range expired {
		in.dropStale(h)
	}
}

// dropStale drops a held heartbeat: its agent's connection has closed.
func (in *Intake) dropStale(h held) {
	in.drop(h.m.Subject, h.hb.Server, schema.DropStale, fmt.Errorf("its agent's connection has closed"))
	in.reply(h.m, schema.DropStale)
}

// release applies the heartbeat held for name, now that a connection of
// that name has connected.
func (in *Intake) release(h held) {
	reason := ""
	if err := in.o.Sink.Heartbeat(h.hb); err != nil {
		in.drop(h.m.Subject, h.hb.Server, schema.DropUnknown, err)
		reason = schema.DropUnknown
	} else if in.o.Received != nil {
		in.o.Received()
	}
	in.reply(h.m, reason)
}

// onShutdown takes a member's shutdown notice.
func (in *Intake) onShutdown(m *nats.Msg) {
	id := strings.TrimSuffix(strings.TrimPrefix(m.Subject, "$SYS.SERVER."), ".SHUTDOWN")
	in.forgetServer(id, "it shut down")
}

// forgetServer drops every connection of NATS server id without marking
// their servers down: their agents are failing over to another member.
func (in *Intake) forgetServer(id, why string) {
	in.mu.Lock()
	n := 0
	var entries []string
	for key, name := range in.live {
		if key.server != id {
			continue
		}
		delete(in.live, key)
		if in.conns[name]--; in.conns[name] <= 0 {
			delete(in.conns, name)
		}
		entries = append(entries, name)
		n++
	}
	in.mu.Unlock()
	if len(entries) > 0 && in.o.MemberGone != nil {
		in.o.MemberGone(entries)
	}
	if n > 0 {
		in.o.Logger.Info("cluster member gone: its agents' connections are given time to fail over", "member", id,
			"why", why, "connections", n)
	}
}

// StallCloses is how long after a stall the closes of agents'
// connections are failovers: the embedded server notices a connection its
// agent left after its pings go unanswered (3 × 1 s), with margin.
const StallCloses = 10 * time.Second

// Stalled says this coordinator was stopped (SIGSTOP, a frozen machine)
// or its clock jumped: its agents failed over to other members meanwhile,
// and the connections they left here close now, seconds after it resumed
// (its pings to them go unanswered). For StallCloses from now, such
// closes forget the connection without judging its server, and the
// closes seen already no longer hold back the agents' heartbeats from
// their new connections (issue 30: a resumed member dropped them for
// 10 s and judged three servers down). Silence stays the backstop.
func (in *Intake) Stalled(now time.Time) {
	until := now.Add(StallCloses)
	in.mu.Lock()
	if until.After(in.stalledUntil) {
		in.stalledUntil = until
	}
	clear(in.lost)
	waiting := in.held
	in.held = map[string]held{}
	in.mu.Unlock()
	for _, h := range waiting {
		in.release(h) // its heartbeat is no stale one: apply it
	}
}

// Close drains the heartbeat connection, so that heartbeats already
// received are applied, and waits for it (at most 5 s).
func (in *Intake) Close() {
	if in.stop != nil {
		close(in.stop)
		<-in.watched
	}
	if in.app != nil {
		if in.app.Drain() == nil {
			select {
			case <-in.drained:
			case <-time.After(5 * time.Second):
			}
		}
	}
	if in.sys != nil {
		in.sys.Close()
	}
}

// drop counts a dropped heartbeat and logs it: the first of a reason and
// subject at once, then one line a minute with the count held back, so a
// flood of bad heartbeats cannot turn the log over (the metric counts all).
func (in *Intake) drop(subject, server, reason string, err error) {
	if held, ok := in.throttle.Allow(reason+"|"+subject, time.Now()); ok {
		attrs := []any{"subject", subject, "server", server, "reason", reason, "error", err,
			"dropped_since_last_line", held, "hint", dropHint(reason)}
		if reason == schema.DropStale {
			// What a hand-made heartbeat must carry to be taken now.
			attrs = append(attrs, "expected_connection_name", server)
		}
		in.o.Logger.Warn("heartbeat dropped", attrs...)
	}
	if in.o.Dropped != nil {
		in.o.Dropped(reason)
	}
}

// dropHint says what a publisher can do about a drop.
func dropHint(reason string) string {
	switch reason {
	case schema.DropStale:
		return "a heartbeat for a server whose agent's connection closed is taken only from a connection named after the server (nats pub --connection-name ENTRY), or once the agent's silence timeout has passed"
	case schema.DropUnknown:
		return "the server must be one of simulationServers, written exactly as there"
	case schema.DropSubject:
		return "publish on <prefix>.load.<node>, node = the server entry with every character outside A-Z a-z 0-9 _ - as _"
	}
	return "see PROTOCOL.md §2 for the heartbeat schema"
}

func (in *Intake) onHeartbeat(m *nats.Msg) {
	if reason, held := in.intake(m); !held {
		in.reply(m, reason)
	}
}

// reply acknowledges a heartbeat sent as a request (an agent's first and
// its leaving one) once it has been applied or dropped. Only to an inbox:
// a reply subject under the prefix would let anyone make the coordinator
// publish there (on an event subject, say).
func (in *Intake) reply(m *nats.Msg, reason string) {
	if !strings.HasPrefix(m.Reply, "_INBOX") {
		return
	}
	ack := "ok"
	if reason != "" {
		ack = "dropped: " + reason
	}
	_ = m.Respond([]byte(ack))
}

// intake applies one heartbeat message and returns the drop reason, or
// "", or held: it waits for its connection's name (hold) and is answered then.
func (in *Intake) intake(m *nats.Msg) (reason string, held bool) {
	node := in.o.Subjects.NodeOf(m.Subject)
	if node == "" {
		in.drop(m.Subject, "", schema.DropSubject, fmt.Errorf("subject is not %s.load.<node>", in.o.Subjects.Prefix))
		return schema.DropSubject, false
	}
	if len(m.Data) > schema.MaxHeartbeat {
		in.drop(m.Subject, "", schema.DropSize, fmt.Errorf("%d bytes", len(m.Data)))
		return schema.DropSize, false
	}
	hb, err := schema.Decode(m.Data)
	if err != nil {
		in.drop(m.Subject, "", schema.DropSchema, err)
		return schema.DropSchema, false
	}
	if schema.Node(hb.Server) != node {
		in.drop(m.Subject, hb.Server, schema.DropSubject, fmt.Errorf("server %q belongs on node %q", hb.Server, schema.Node(hb.Server)))
		return schema.DropSubject, false
	}
	in.mu.Lock()
	at, stale := in.lost[hb.Server]
	if stale && time.Since(at) >= in.o.LostFor {
		delete(in.lost, hb.Server)
		stale = false
	}
	in.mu.Unlock()
	if stale && hb.Status != schema.StatusLeaving {
		// A leaving heartbeat is taken at once: it cannot bring a server
		// back, and one published by hand (the README's nats pub
		// --connection-name) may come after its short-lived connection's
		// CONNECT and DISCONNECT advisories both (under load, a CI run).
		//
		// Sent just before its connection closed and overtaken by the
		// advisory, or sent by a new connection of that name whose own
		// CONNECT advisory has not come yet: held a moment to tell.
		in.hold(hb, m)
		return "", true
	}
	if err := in.o.Sink.Heartbeat(hb); err != nil {
		in.drop(m.Subject, hb.Server, schema.DropUnknown, err)
		return schema.DropUnknown, false
	}
	if in.o.Received != nil {
		in.o.Received()
	}
	return "", false
}

type advisory struct {
	Server server.ServerInfo `json:"server"`
	Client server.ClientInfo `json:"client"`
	Reason string            `json:"reason"`
}

// memberShutdown is the reason a member gives its clients as it stops.
const memberShutdown = "Server Shutdown"

// maxLost bounds the closed connections' names kept (IntakeOptions.LostFor).
const maxLost = 10000

// connKey names one connection: client IDs are unique per NATS server only.
type connKey struct {
	server string
	client uint64
}

// onAdvisory applies a connect or disconnect advisory, in the server's order.
func (in *Intake) onAdvisory(m *nats.Msg) {
	connect := strings.HasSuffix(m.Subject, ".CONNECT")
	if !connect && !strings.HasSuffix(m.Subject, ".DISCONNECT") {
		return // the account's connection counts
	}
	var a advisory
	if json.Unmarshal(m.Data, &a) != nil || a.Client.Name == "" {
		return
	}
	key, name := connKey{a.Server.ID, a.Client.ID}, a.Client.Name
	in.mu.Lock()
	if connect {
		if _, known := in.live[key]; !known { // the snapshot may have counted it
			in.live[key] = name
			in.conns[name]++
		}
		delete(in.lost, name)
		h, waiting := in.held[name]
		delete(in.held, name)
		in.mu.Unlock()
		if waiting {
			in.release(h)
		}
		return
	}
	if _, ok := in.live[key]; !ok {
		in.mu.Unlock()
		return // a connection that never completed its connect
	}
	delete(in.live, key)
	in.conns[name]--
	last := in.conns[name] <= 0
	if (a.Reason == memberShutdown && in.o.Peers != nil) || time.Now().Before(in.stalledUntil) {
		// A member stopping: its agents fail over to another member.
		if last {
			delete(in.conns, name)
		}
		in.mu.Unlock()
		return
	}
	if last {
		delete(in.conns, name)
		now := time.Now()
		if len(in.lost) >= maxLost {
			for n, at := range in.lost {
				if now.Sub(at) >= in.o.LostFor {
					delete(in.lost, n)
				}
			}
		}
		if len(in.lost) < maxLost {
			in.lost[name] = now
		}
	}
	in.mu.Unlock()
	if last {
		in.o.Sink.ConnectionLost(name)
	}
}
