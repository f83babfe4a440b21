package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// testNet is a network of hosts, each a network namespace with one address
// on a bridge of its own namespace: machines that reach each other and
// nothing else. Addresses are 10.231.0.1, .2, … in the order of names.
type testNet struct {
	ns    map[string]string // host name → its namespace
	addr  map[string]string // host name → its address
	hosts string            // /etc/hosts lines naming every host
	// switchNS holds the bridge; subnet is the hosts' a.b.c.
	switchNS, subnet string
}

func newTestNet(t *testing.T, names ...string) *testNet {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) is not installed: .ci/run installs it")
	}
	sweepStaleNets()
	prefix := fmt.Sprintf("simgate-%d-", os.Getpid())
	n := &testNet{ns: map[string]string{}, addr: map[string]string{}, subnet: "10.231.0"}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("no network namespaces here: ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	sw := prefix + "switch"
	ip("netns", "add", sw)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", sw).Run() })
	ip("-n", sw, "link", "add", "br0", "type", "bridge")
	ip("-n", sw, "link", "set", "br0", "up")
	n.switchNS = sw
	var hosts strings.Builder
	for i, name := range names {
		ns, addr := prefix+strings.SplitN(name, ".", 2)[0], fmt.Sprintf("10.231.0.%d", i+1)
		ip("netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		port := fmt.Sprintf("v%d", i)
		ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ip("-n", sw, "link", "set", port, "master", "br0", "up")
		ip("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		ip("-n", ns, "link", "set", "eth0", "up")
		ip("-n", ns, "link", "set", "lo", "up")
		n.ns[name], n.addr[name] = ns, addr
		fmt.Fprintf(&hosts, "%s %s\n", addr, name)
	}
	n.hosts = hosts.String()
	return n
}

// sweepStaleNets deletes the namespaces and links a test run that was
// killed (a panic on timeout runs no cleanup) left: a stale link on a
// test subnet would route this run's packets nowhere.
func sweepStaleNets() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		rest, ok := strings.CutPrefix(name, "simgate-")
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidText); err == nil && pid != os.Getpid() && !alive(pid) {
			_ = exec.Command("ip", "netns", "del", name).Run()
			_ = exec.Command("ip", "link", "del", fmt.Sprintf("sg%d", pid%100000)).Run()
		}
	}
}

// originalApacheRules are the original's rules, as the seed's setup guide
// writes them in the site's VirtualHost.
const originalApacheRules = `    RewriteEngine on
    # port redirection rules (for session_server.py, simulation_server.py and webots)
    # websockets (should come first)
    RewriteCond %{HTTP:Upgrade} websocket [NC]
    RewriteCond %{HTTP:Connection} upgrade [NC]
    RewriteRule ^/(\d*)/(.*)$ "ws://localhost:$1/$2" [P,L]
    # http traffic (should come after websocket)
    RewriteRule ^/load$ "http://localhost:1999/load" [P,L]
    RewriteRule ^/monitor$ "http://localhost:1999/monitor" [P,L]
    RewriteRule ^/session$ "http://localhost:1999/session" [P,L]
    RewriteRule ^/(\d*)/(.*)$ "http://localhost:$1/$2" [P,L]
`

// TestREADMEHighAvailability runs README "High availability"'s install,
// Apache, agent and upgrade commands as written, on three coordinator
// hosts (coord1, coord2, coord3.example.org) and one simulation machine,
// each a readmeHost in a network of its own (testNet), with a real Apache
// on coord1 in front of the three. The three form one cluster with one
// leader; visitors through Apache reach the simulation machine's server;
// and during the rolling upgrade, visitors asking through Apache all along
// are all placed.
func TestREADMEHighAvailability(t *testing.T) {
	readmeTools(t, "ip", "python3")
	blocks := readmeBlocks(t, "High availability")
	if len(blocks) != 5 {
		t.Fatalf("High availability has %d sh blocks, want 5 (install, look, Apache, agents, upgrade): %q", len(blocks), blocks)
	}
	install, look, apacheCmds, agentCmds, upgrade := blocks[0], blocks[1], blocks[2], blocks[3], blocks[4]
	coords := []string{"coord1.example.org", "coord2.example.org", "coord3.example.org"}
	const sim = "sim1.example.org"
	net := newTestNet(t, append(coords, sim)...)
	server := net.addr[sim] + ":2000" // an address: nothing is looked up

	// One checkout, built as Installing says, shared by the hosts.
	src := filepath.Join(t.TempDir(), "simgate")
	copyRepo(t, src)
	build := readmeCommands(t, "Installing")[0]
	cmd := exec.Command("sh", "-c", build)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build, err, out)
	}

	// The site's session.json, as step 1 says, the same on the three.
	site := seedConfig(t)
	delete(site, "administrator") // no mail server in these hosts' network
	site["simulationServers"], site["ssl"] = []string{server}, false
	site["nats"] = map[string]any{
		"listen": "0.0.0.0:4222",
		"users": []map[string]any{
			{"user": "sim1", "password": "sim1-password", "role": "agent", "servers": []string{server}},
		},
		"cluster": map[string]any{"name": "simgate", "listen": "0.0.0.0:6222", "routes": []string{
			"nats-route://coord1.example.org:6222", "nats-route://coord2.example.org:6222", "nats-route://coord3.example.org:6222"}},
	}
	site["http"] = map[string]any{"trustedProxies": []string{net.addr[coords[0]]}} // Apache's host
	siteJSON, _ := json.MarshalIndent(site, "", "  ")

	hosts := map[string]*readmeHost{}
	for _, name := range append(coords, sim) {
		h := newReadmeHost(t, name, src, net.ns[name])
		f, err := os.OpenFile(filepath.Join(h.root, "etc", "hosts"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(f, net.hosts)
		f.Close()
		h.edit("/etc/simgate/session.json", "cat >\"$1\" <<'EOF'\n"+string(siteJSON)+"\nEOF\n")
		hosts[name] = h
	}

	// 1. Each coordinator host: install, configure, check, start.
	for _, name := range coords {
		hosts[name].run("", install...)
	}
	member := func(h *readmeHost) (m struct {
		Name    string `json:"name"`
		Leader  bool   `json:"leader"`
		Members int    `json:"members"`
	}, err error) {
		out, err := h.curl("localhost:1999/api/servers")
		if err != nil {
			return m, err
		}
		var doc struct {
			Summary struct {
				Coordinator json.RawMessage `json:"coordinator"`
			} `json:"summary"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			return m, err
		}
		err = json.Unmarshal(doc.Summary.Coordinator, &m)
		return m, err
	}
	testutil.WaitFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		leaders := 0
		for _, name := range coords {
			m, err := member(hosts[name])
			if err != nil || m.Members != 3 {
				return fmt.Errorf("%s: %+v %v", name, m, err)
			}
			if m.Leader {
				leaders++
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d leaders", leaders)
		}
		return nil
	})
	leaders := 0
	for _, name := range coords {
		for c, out := range hosts[name].run("", look...) {
			if strings.Contains(c, "jq") {
				if !strings.Contains(out, `"members":3`) {
					t.Errorf("%s: %s: %q, want members 3", name, c, out)
				}
				if strings.Contains(out, `"leader":true`) {
					leaders++
				}
			}
		}
		if log := hosts[name].log("simgate-coordinator"); !strings.Contains(log, "members=3") || !strings.Contains(log, "state_replicas=3") {
			t.Errorf("%s's log does not say members=3 state_replicas=3:\n%s", name, log)
		}
	}
	if leaders != 1 {
		t.Errorf("%d members say they lead, want 1", leaders)
	}

	// 2. Apache on coord1, in front of the three.
	www := hosts[coords[0]]
	front := net.addr[coords[0]] + ":8080"
	www.apache(front)
	// The site as the original left it: its rules inline in the HTTPS
	// VirtualHost, as the seed's guide writes them (issue 32: the README
	// did not say to delete them, and every visitor got 503).
	www.write("etc/apache2/sites-available/000-default-le-ssl.conf", "<VirtualHost "+front+">\n    ServerName localhost\n    DocumentRoot /var/www/html\n"+
		originalApacheRules+"</VirtualHost>\n", 0o644)
	www.edit("/etc/apache2/simgate-ha.conf", "# The example's host names are this network's.\ngrep -q coord3.example.org \"$1\"\n")
	// As the README says: the original's rules deleted, from RewriteEngine
	// on to its last RewriteRule, and simgate-ha.conf included instead.
	www.edit("/etc/apache2/sites-available/000-default-le-ssl.conf", `sed -i '/RewriteEngine on/,/"http:\/\/localhost:\$1\/\$2" \[P,L\]/d' "$1"
grep -q RewriteRule "$1" && exit 1
sed -i 's|^</VirtualHost>|    Include /etc/apache2/simgate-ha.conf\n</VirtualHost>|' "$1"
`)
	for c, out := range www.run("", apacheCmds...) {
		if c == "apache2ctl configtest" && !strings.Contains(out, "Syntax OK") {
			t.Errorf("%s: %q", c, out)
		}
	}

	// 3. The simulation machine: its server (a stand-in answering /load),
	// its agent installed as Installing says, then pointed at the three.
	agentHost := hosts[sim]
	agentHost.write("srv/load", "10\n", 0o644)
	agentHost.edit("/etc/simgate/agent.env", fmt.Sprintf(`sed -i -e 's|^SIMGATE_SERVER=.*|SIMGATE_SERVER=%s|' \
  -e 's|^SIMGATE_NATS=.*|SIMGATE_NATS=nats://coord1.example.org:4222,nats://coord2.example.org:4222,nats://coord3.example.org:4222|' "$1"
printf 'SIMGATE_USER=sim1\nSIMGATE_PASSWORD=sim1-password\n' >>"$1"
`, server))
	installAgent := ""
	for _, c := range readmeCommands(t, "Installing") {
		if strings.HasPrefix(c, "deploy/install.sh agent") {
			installAgent = c
		}
	}
	agentHost.run(fmt.Sprintf(`python3 -m http.server 2000 --bind 127.0.0.1 --directory %[1]s/srv >/dev/null 2>&1 &
echo $! >%[1]s/pids/simulation-server`, agentHost.root), append([]string{installAgent}, agentCmds...)...)

	session := func() (string, error) { return www.curl("http://" + front + "/session") }
	testutil.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if body, err := session(); err != nil || body != "ws://"+server {
			return fmt.Errorf("/session through Apache: %q %v", body, err)
		}
		return nil
	})

	// The monitor's live updates through Apache: its WebSocket is proxied
	// to a member (101), so the page does not fall back to polling.
	testutil.WaitFor(t, 10*time.Second, 200*time.Millisecond, func() error {
		out, _ := www.curl("-i", "-N", "-m", "2", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
			"-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "http://"+front+"/monitor")
		if !strings.Contains(out, " 101 ") {
			return fmt.Errorf("the monitor's WebSocket through Apache: %q", out)
		}
		return nil
	})

	// The rolling upgrade, one coordinator host after the other, with
	// visitors asking through Apache all along.
	var mu sync.Mutex
	var asked, refused int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			body, err := session()
			mu.Lock()
			asked++
			// A place in the waiting room (PROTOCOL §1.2: this test's one
			// address past its cap of unconfirmed bookings) is no refusal.
			if err != nil || (body != "ws://"+server && !strings.Contains(body, "/wait/")) {
				refused++
				t.Logf("a visitor through Apache during the upgrade, at %s: %q %v", time.Now().Format("15:04:05.000"), body, err)
			}
			mu.Unlock()
		}
	}()
	for _, name := range coords {
		hosts[name].run("", upgrade...)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d visitors through Apache during the rolling upgrade, %d refused", asked, refused)
	if refused > 0 {
		t.Errorf("%d of %d visitors refused during the README's rolling upgrade", refused, asked)
	}
	if asked == 0 {
		t.Error("no visitor asked during the upgrade")
	}
	for _, name := range coords {
		if log := hosts[name].log("simgate-coordinator"); strings.Contains(log, "level=ERROR") {
			t.Errorf("%s logged an ERROR:\n%s", name, log)
		}
	}
}
