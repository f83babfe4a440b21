package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/notify/smtptest"
	"github.com/simgate/simgate/internal/testutil"
)

// cluster is several coordinators as one NATS cluster on loopback.
type cluster struct {
	members []*farm
	ports   []int // their route ports
}

// member is what /api/servers says of a coordinator in its cluster.
type member struct {
	Name    string `json:"name"`
	Leader  bool   `json:"leader"`
	Members int    `json:"members"`
}

func (f *farm) member(t *testing.T) member {
	t.Helper()
	_, body, err := get(f.base + "/api/servers")
	if err != nil {
		return member{}
	}
	var doc struct {
		Summary struct {
			Coordinator *member `json:"coordinator"`
		} `json:"summary"`
	}
	if json.Unmarshal([]byte(body), &doc) != nil || doc.Summary.Coordinator == nil {
		t.Fatalf("/api/servers says nothing of the coordinator: %s", body)
	}
	return *doc.Summary.Coordinator
}

// startCluster starts n coordinators sharing one configuration (extra's
// keys over a plain local one, and nats.cluster with every member's route),
// each with its own logDir, and waits until they form one cluster with one
// leader.
func startCluster(t *testing.T, n int, extra map[string]any) *cluster {
	t.Helper()
	for attempt := 0; ; attempt++ {
		c, err := tryCluster(t, n, extra)
		if err == nil {
			return c
		}
		if attempt == 2 {
			t.Fatal(err)
		}
		t.Logf("starting the cluster again with other route ports: %v", err)
	}
}

func tryCluster(t *testing.T, n int, extra map[string]any) (*cluster, error) {
	t.Helper()
	c := &cluster{ports: testutil.FixedPorts(t, n)}
	var routes []string
	for _, p := range c.ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i, p := range c.ports {
		cfg := map[string]any{
			"port": 0, "ssl": false, "portRewrite": false, "debug": true, "logDir": t.TempDir(),
			"nats": map[string]any{"listen": "127.0.0.1:0", "cluster": map[string]any{
				"name": "e2e", "listen": fmt.Sprintf("127.0.0.1:%d", p), "routes": routes}},
		}
		for k, v := range extra {
			cfg[k] = v
		}
		data, _ := json.Marshal(cfg)
		path := filepath.Join(t.TempDir(), fmt.Sprintf("member%d.json", i))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		f := newFarm(t, path, "")
		if err := f.tryLaunch(t); err != nil {
			for _, m := range c.members {
				_, _ = m.coord.stop(t, syscall.SIGKILL, 10*time.Second)
			}
			_, _ = f.coord.stop(t, syscall.SIGKILL, 10*time.Second)
			return nil, err
		}
		c.members = append(c.members, f)
	}
	c.waitFormed(t, c.members)
	for _, m := range c.members {
		m.waitReady(t)
	}
	// A normal start, members meeting one after another, is no error.
	for i, m := range c.members {
		for _, line := range strings.Split(m.coord.out.String(), "\n") {
			if strings.Contains(line, "level=ERROR") {
				t.Errorf("member %d logged an error while the cluster formed: %s", i, line)
			}
		}
	}
	return c, nil
}

// tryLaunch is launch that reports a start that failed on a busy route
// port (the only port a cluster test picks) instead of failing the test.
func (f *farm) tryLaunch(t *testing.T) error {
	t.Helper()
	lf := filepath.Join(t.TempDir(), "listening.json")
	f.coord = startIn(t, f.dir, f.bin, "-listen-file", lf, f.cfg)
	var busy error
	testutil.WaitFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		if f.coord.exited() {
			if out := f.coord.out.String(); strings.Contains(out, "address already in use") {
				busy = fmt.Errorf("a route port was taken: %s", out)
				return nil
			}
			t.Fatalf("the coordinator exited before serving (%v):\n%s", f.coord.err, f.coord.out.String())
		}
		data, err := os.ReadFile(lf)
		if err != nil {
			return err
		}
		return json.Unmarshal(data, &f.bound)
	})
	if busy != nil {
		return busy
	}
	f.base = fmt.Sprintf("http://127.0.0.1:%d", f.bound.HTTPPort)
	f.nats = fmt.Sprintf("nats://127.0.0.1:%d", f.bound.NATSPort)
	// Serving, not ready: a member is ready once the cluster gives it its
	// drains, which takes a majority of the members (tryCluster waits).
	f.waitHealthy(t)
	return nil
}

// waitFormed waits until each of live reaches all of them and exactly one leads.
func (c *cluster) waitFormed(t *testing.T, live []*farm) *farm {
	t.Helper()
	var leader *farm
	testutil.WaitFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		leader = nil
		for _, f := range live {
			m := f.member(t)
			if m.Members != len(live) {
				return fmt.Errorf("%s reaches %d members, want %d", m.Name, m.Members, len(live))
			}
			if m.Leader {
				if leader != nil {
					return fmt.Errorf("two leaders")
				}
				leader = f
			}
		}
		if leader == nil {
			return fmt.Errorf("no leader yet")
		}
		return nil
	})
	return leader
}

// startMailCluster is a cluster of n members on servers, mailing the test
// SMTP server (mailing); mail adds to or overrides the mail keys.
func startMailCluster(t *testing.T, n int, servers []string, mail map[string]any) (*cluster, *smtptest.Server) {
	t.Helper()
	smtp, keys := mailing(t, mail)
	keys["simulationServers"] = servers
	return startCluster(t, n, keys), smtp
}

// mailing starts the test SMTP server and returns it with the keys that
// mail the administrator through it: its CA trusted, no "never heard from"
// mail, retries every second; mail adds to or overrides the mail keys.
func mailing(t *testing.T, mail map[string]any) (*smtptest.Server, map[string]any) {
	t.Helper()
	smtp := smtptest.Start(t, "127.0.0.1:0")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, smtp.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(smtp.Addr, ":")
	var mailPort int
	fmt.Sscan(port, &mailPort)
	keys := map[string]any{"caFile": ca, "grace": 3600, "retryMax": 1}
	for k, v := range mail {
		keys[k] = v
	}
	return smtp, map[string]any{
		"administrator": "admin@example.org", "mailServer": host, "mailServerPort": mailPort,
		"mailSender": "sender@example.org", "mailSenderPassword": smtp.Password, "mail": keys,
	}
}

// quietProc is a quiet machine's /proc, for agents on a machine the tests
// load: "full" means what the test says (gopsutil's HOST_PROC).
func quietProc(t *testing.T) string {
	t.Helper()
	quiet, err := filepath.Abs("../internal/agent/testdata/proc-idle")
	if err != nil {
		t.Fatal(err)
	}
	return quiet
}

func (c *cluster) natsURLs() string {
	var urls []string
	for _, f := range c.members {
		urls = append(urls, f.nats)
	}
	return strings.Join(urls, ",")
}

// TestClusterSurvivesAMember is issue 15's acceptance run: three
// coordinators, agents spread over them; a burst alternated over the
// members is spread over the servers; kill -9 of the leader with mails
// pending and the SMTP server down costs no session, no server, no false
// mail, and the pending mails go exactly once; the member restarted
// rejoins with the full view; then a follower dies as well.
func TestClusterSurvivesAMember(t *testing.T) {
	servers := []string{"127.0.0.1/3119", "127.0.0.1/3100", "127.0.0.1/3101", "127.0.0.1/3102", "127.0.0.1/3103", "127.0.0.1/3104"}
	const full = "127.0.0.1/3105"
	smtp, keys := mailing(t, nil)
	keys["simulationServers"] = append(append([]string{}, servers...), full)
	keys["server"] = "sessions.example.org"
	c := startCluster(t, 3, keys)
	const interval = 200 * time.Millisecond
	urls := c.natsURLs()
	// Six real agents on one machine that the test itself loads (three
	// coordinators, the agents, the visitors, other packages' tests):
	// their CPU and memory come from a quiet machine's /proc files
	// (gopsutil's HOST_PROC), so that "full" means what the test says.
	quiet, err := filepath.Abs("../internal/agent/testdata/proc-idle")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		startEnv(t, "", []string{"HOST_PROC=" + quiet}, c.members[0].agent, "-nats", urls, "-server", s,
			"-interval", interval.String(), "-probe", "off", "-simulation-config", "off")
	}
	for _, f := range c.members {
		for _, s := range servers {
			f.waitState(t, s, 10*time.Second, "up")
		}
	}

	// A burst of 300 sessions alternated over the members, from 300 visitors.
	counts := map[string]int{}
	for i := range 300 {
		f := c.members[i%3]
		_, body, err := getAs(f.base+"/session", fmt.Sprintf("10.1.%d.%d", i/200, i%200+1))
		if err != nil {
			t.Fatal(err)
		}
		counts[strings.TrimPrefix(body, "ws://")]++
	}
	t.Logf("300 sessions over 3 members: %v", counts)
	for _, s := range servers {
		if counts[s] > 300/len(servers)+3 {
			t.Errorf("%s got %d sessions, above its fair share + 3 (%d)", s, counts[s], 300/len(servers)+3)
		}
	}

	// Each member counted the other two's bookings: 200 of the 300.
	for _, f := range c.members {
		testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if n := f.scrape(t).value("simgate_bookings_applied_total"); n != 200 {
				return fmt.Errorf("%s applied %v bookings of the other members, want 200", f.base, n)
			}
			return nil
		})
	}

	// Mails pending on the leader with the SMTP server down: a server that
	// fills up, published from a connection on a member that stays.
	leader := c.waitFormed(t, c.members)
	var keep []*farm
	for _, f := range c.members {
		if f != leader {
			keep = append(keep, f)
		}
	}
	smtp.SetDown(true)
	nc, err := nats.Connect(keep[0].nats, nats.Name(full))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var fullLoad atomic.Int64
	fullLoad.Store(99)
	stopBeats := make(chan struct{})
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			data := fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":%d,"interval":%g,"maxSessions":100}`, full, fullLoad.Load(), interval.Seconds())
			_ = nc.Publish("simgate.load."+node(full), []byte(data))
			select {
			case <-stopBeats:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stopBeats); beats.Wait() }()
	testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(leader.coord.out.String(), `msg="mail not sent; will retry" component=mail subject="Simulation server reached maximum load"`) {
			return fmt.Errorf("the leader has not tried the mail yet")
		}
		return nil
	})

	// Watch the survivors: events, refusals, and heartbeat gaps.
	watch, err := nats.Connect(keep[0].nats, nats.Name("cluster-watcher"))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	var mu sync.Mutex
	var downs []string
	last := map[string]time.Time{}
	gap := map[string]time.Duration{}
	if _, err := watch.Subscribe("simgate.event.down.>", func(m *nats.Msg) {
		mu.Lock()
		downs = append(downs, m.Subject)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Subscribe("simgate.load.>", func(m *nats.Msg) {
		now := time.Now()
		mu.Lock()
		if at, ok := last[m.Subject]; ok {
			gap[m.Subject] = max(gap[m.Subject], now.Sub(at))
		}
		last[m.Subject] = now
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	_ = watch.Flush()
	var refused, errs, asked atomic.Int64
	stopAsking := make(chan struct{})
	var asking sync.WaitGroup
	for i, f := range keep {
		asking.Add(1)
		go func() {
			defer asking.Done()
			for n := 0; ; n++ {
				select {
				case <-stopAsking:
					return
				default:
				}
				_, body, err := getAs(f.base+"/session", fmt.Sprintf("10.2.%d.%d", i, n%250+1))
				asked.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
					t.Logf("no answer from a survivor: %v", err)
				case !strings.HasPrefix(body, "ws://"):
					refused.Add(1)
					t.Logf("refused on a survivor: %q", body)
				}
				time.Sleep(10 * time.Millisecond) // a visitor's pace, not a wait
			}
		}()
	}

	killed := time.Now()
	if code, _ := leader.coord.stop(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatalf("kill -9 gave exit 0")
	}
	newLeader := c.waitFormed(t, keep)
	election := time.Since(killed)
	t.Logf("a new leader %s in %v", newLeader.member(t).Name, election.Round(time.Millisecond))
	smtp.SetDown(false)
	waitMail(t, smtp, "Simulation server reached maximum load", full+" simulation server has reached maximum load (99.0%).")
	// A fence: a later mail of the same server goes after any copy of the first.
	fullLoad.Store(10)
	waitMail(t, smtp, "Simulation server available again", full+" simulation server is available again (load = 10.0%).")
	n := 0
	for _, m := range smtp.Messages() {
		if strings.Contains(m.Data, "Subject: Simulation server reached maximum load\r\n") {
			n++
		}
		if strings.Contains(m.Data, "Subject: Simulation server not responding\r\n") {
			t.Errorf("a mail says a server is not responding:\n%s", m.Data)
		}
	}
	if n != 1 {
		t.Errorf("the pending mail went %d times, want once", n)
	}

	// The killed member restarts and has the full view within 2 intervals
	// of reaching the others.
	leader.launch(t)
	c.waitFormed(t, c.members)
	rejoined := time.Now()
	for _, s := range servers {
		leader.waitState(t, s, 10*time.Second, "up")
	}
	view := time.Since(rejoined)
	t.Logf("the restarted member had every server up %v after it reached the others", view.Round(time.Millisecond))
	if view > 2*interval+100*time.Millisecond {
		t.Errorf("full view after %v, want within 2 intervals (%v)", view, 2*interval)
	}

	close(stopAsking)
	asking.Wait()

	// A follower dies too: the two left still place, no server down.
	var follower *farm
	for _, f := range keep {
		if f != newLeader {
			follower = f
		}
	}
	if code, _ := follower.coord.stop(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatalf("kill -9 gave exit 0")
	}
	c.waitFormed(t, []*farm{newLeader, leader})
	for i, f := range []*farm{newLeader, leader} {
		for j := range 20 {
			if _, body, err := getAs(f.base+"/session", fmt.Sprintf("10.3.%d.%d", i, j+1)); err != nil || !strings.HasPrefix(body, "ws://") {
				t.Errorf("refused after a follower died: %q %v", body, err)
			}
		}
		for _, s := range servers {
			f.waitState(t, s, 5*time.Second, "up")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d /session on the survivors during the failover, %d refused; longest heartbeat gap %v",
		asked.Load(), refused.Load(), maxGap(gap))
	if len(downs) > 0 {
		t.Errorf("servers went down: %v", downs)
	}
	mails := countMails(smtp.Messages(), []mailWant{
		{"Simulation server reached maximum load", full}, {"Simulation server available again", full}})
	figures{placed: asked.Load() - refused.Load() - errs.Load(), refused: refused.Load(), errors: errs.Load(),
		falseDowns: len(downs), mails: &mails, election: election}.report(t)
	if g := maxGap(gap); g > interval+time.Second {
		t.Errorf("an agent's heartbeats stopped for %v: failover took over 1 s", g)
	}
}

func maxGap(gap map[string]time.Duration) time.Duration {
	var m time.Duration
	for _, g := range gap {
		m = max(m, g)
	}
	return m
}
