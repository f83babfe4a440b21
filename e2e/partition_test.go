package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/testutil"
)

// partitionNet is a cluster of three coordinators, each in a network
// namespace of its own on one switch, which the test process joins
// (testNet, joined): the test asks every member directly, and cuts a
// member from the others, both ways, with blackhole routes in their
// namespaces (issue 30), leaving the test's own link to each untouched.
type partitionNet struct {
	net     *testNet
	members []*farm
	names   []string
	self    string // the test process's address on the switch
}

const partitionSubnet = "10.232.0"

// startPartitionNet starts the three members with servers configured and
// an admin, and waits until they formed one cluster and are ready.
func startPartitionNet(t *testing.T, servers []string) *partitionNet {
	t.Helper()
	readmeTools(t, "ip")
	p := &partitionNet{names: []string{"m1", "m2", "m3"}}
	p.net = newTestNetOn(t, partitionSubnet, p.names...)
	p.self = p.net.join(t)
	var routes []string
	for _, n := range p.names {
		routes = append(routes, "nats-route://"+p.net.addr[n]+":6222")
	}
	for _, n := range p.names {
		cfg := map[string]any{
			"port": 1999, "ssl": false, "portRewrite": false, "debug": true, "logDir": t.TempDir(),
			"simulationServers": servers,
			"http":              map[string]any{"trustedProxies": []string{p.self}},
			"nats": map[string]any{"listen": "0.0.0.0:4222",
				"users": []map[string]any{
					{"user": "sim", "password": "sim-password", "role": "agent", "servers": servers},
					{"user": "admin", "password": "admin-password", "role": "admin"},
				},
				"cluster": map[string]any{"name": "partition", "listen": "0.0.0.0:6222", "routes": routes}},
		}
		data, _ := json.Marshal(cfg)
		path := filepath.Join(t.TempDir(), n+".json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		f := newFarm(t, path, "")
		f.coord = startIn(t, "", "ip", "netns", "exec", p.net.ns[n], f.bin, path)
		f.base = "http://" + p.net.addr[n] + ":1999"
		f.nats = "nats://" + p.net.addr[n] + ":4222"
		p.members = append(p.members, f)
	}
	for _, f := range p.members {
		testutil.WaitFor(t, 60*time.Second, 50*time.Millisecond, func() error {
			if f.coord.exited() {
				t.Fatalf("a member exited (%v):\n%s", f.coord.err, f.coord.out.String())
			}
			_, body, err := get(f.base + "/readyz")
			if err != nil {
				return fmt.Errorf("%s: %v %s", f.base, err, body)
			}
			return nil
		})
	}
	return p
}

// newTestNetOn is newTestNet on subnet (a.b.c: hosts .1, .2, …).
func newTestNetOn(t *testing.T, subnet string, names ...string) *testNet {
	t.Helper()
	n := newTestNet(t, names...)
	if subnet == "10.231.0" {
		return n
	}
	for i, name := range names {
		old, addr := n.addr[name], fmt.Sprintf("%s.%d", subnet, i+1)
		ipCmd(t, "-n", n.ns[name], "addr", "del", old+"/24", "dev", "eth0")
		ipCmd(t, "-n", n.ns[name], "addr", "add", addr+"/24", "dev", "eth0")
		n.addr[name] = addr
	}
	n.subnet = subnet
	return n
}

// join links the test process's own network to the switch, at .254, and
// returns that address.
func (n *testNet) join(t *testing.T) string {
	t.Helper()
	self := n.subnet + ".254"
	link := fmt.Sprintf("sg%d", os.Getpid()%100000)
	ipCmd(t, "link", "add", link, "type", "veth", "peer", "name", "up0", "netns", n.switchNS)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", link).Run() })
	ipCmd(t, "-n", n.switchNS, "link", "set", "up0", "master", "br0", "up")
	ipCmd(t, "addr", "add", self+"/24", "dev", link)
	ipCmd(t, "link", "set", link, "up")
	return self
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// cut cuts member i from the other members, both ways (add) or heals it.
func (p *partitionNet) cut(t *testing.T, i int, add bool) {
	t.Helper()
	verb := "add"
	if !add {
		verb = "del"
	}
	for j, other := range p.names {
		if j == i {
			continue
		}
		ipCmd(t, "-n", p.net.ns[p.names[i]], "route", verb, "blackhole", p.net.addr[other]+"/32")
		ipCmd(t, "-n", p.net.ns[other], "route", verb, "blackhole", p.net.addr[p.names[i]]+"/32")
	}
}

// leader is the index of the member that says it leads, -1 for none.
func (p *partitionNet) leader(t *testing.T) int {
	t.Helper()
	for i, f := range p.members {
		_, body, err := get(f.base + "/api/servers")
		if err == nil && strings.Contains(body, `"leader":true`) {
			return i
		}
	}
	return -1
}

// TestPartitionedMemberStepsAside: issue 30. A member cut from the other
// two (a follower, then the leader) says it is not ready within about
// 2 s, places nobody meanwhile (its visitors get the busy farm's answer,
// never a server drained on the other side), while the two others place
// every visitor and judge no server down; healed, it is ready again and
// never places on the server drained while it was cut off.
func TestPartitionedMemberStepsAside(t *testing.T) {
	drained, open := "127.0.0.1:3301", "127.0.0.1:3302"
	p := startPartitionNet(t, []string{drained, open})
	var sum struct{ placed, refused, falseDowns, onDrained int }
	defer func() {
		t.Logf("fault figures: placed=%d refused=%d errors=0 false_downs=%d on_drained=%d election=-",
			sum.placed, sum.refused, sum.falseDowns, sum.onDrained)
	}()
	for _, role := range []string{"follower", "leader"} {
		var lead int
		testutil.WaitFor(t, 30*time.Second, 50*time.Millisecond, func() error {
			if lead = p.leader(t); lead < 0 {
				return fmt.Errorf("no leader")
			}
			return nil
		})
		cut := (lead + 1) % 3
		if role == "leader" {
			cut = lead
		}
		beater := p.members[(cut+1)%3] // the agents' member stays with the majority
		stop := beatAll(t, beater.nats, []string{drained, open})
		for _, f := range p.members {
			f.waitState(t, open, 10*time.Second, "up")
		}
		if role == "leader" { // the follower's round drained it: lift it (503 while the state elects after the heal)
			testutil.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() error {
				return tryAdminAction(beater, "undrain", drained)
			})
		}
		before := downs(t, p.members)
		begin := time.Now()
		p.cut(t, cut, true)
		var stepped time.Duration
		testutil.WaitFor(t, 15*time.Second, 20*time.Millisecond, func() error {
			if resp, _, _ := get(p.members[cut].base + "/readyz"); resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				return fmt.Errorf("the cut-off %s is still ready", role)
			}
			stepped = time.Since(begin)
			return nil
		})
		t.Logf("cut-off %s: not ready %v after the cut", role, stepped.Round(time.Millisecond))
		// The majority drains a server while the member is cut off (once
		// the state has a leader on its side: 503 meanwhile).
		testutil.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() error {
			return tryAdminAction(beater, "drain", drained)
		})
		var visible time.Duration // until the other majority member has it
		for j, f := range p.members {
			if j != cut {
				visible = max(visible, f.waitState(t, drained, 10*time.Second, "draining"))
			}
		}
		// The cut-off member holds a visitor (up to 4 s: it may reach its
		// majority again in a moment), then answers as a busy farm; three
		// ask it at once.
		var cutWG sync.WaitGroup
		for i := range 3 {
			cutWG.Add(1)
			go func() {
				defer cutWG.Done()
				_, body, err := getAs(p.members[cut].base+"/session", fmt.Sprintf("192.0.2.%d", i+1))
				if err != nil || !strings.HasPrefix(body, "Error:") {
					t.Errorf("the cut-off %s answered %q %v, want the busy farm's answer", role, body, err)
				}
			}()
		}
		placed, refused := 0, 0
		for i := range 40 {
			for j, f := range p.members {
				if j == cut {
					continue
				}
				_, body, err := getAs(f.base+"/session", fmt.Sprintf("198.51.100.%d", i+1))
				if body == "ws://"+open {
					placed++
					continue
				}
				refused++
				t.Errorf("a majority member answered %q %v", body, err)
			}
		}
		cutWG.Wait()
		p.cut(t, cut, false)
		healed := time.Now()
		testutil.WaitFor(t, 30*time.Second, 20*time.Millisecond, func() error {
			_, _, err := get(p.members[cut].base + "/readyz")
			return err
		})
		back := time.Since(healed)
		onDrained := 0
		for i := range 100 {
			if _, body, _ := getAs(p.members[cut].base+"/session", fmt.Sprintf("203.0.113.%d", i+1)); body == "ws://"+drained {
				onDrained++
			}
		}
		stop()
		falseDown := falseDowns(t, p.members, before, 0)
		sum.placed, sum.refused, sum.falseDowns, sum.onDrained = sum.placed+placed, sum.refused+refused, sum.falseDowns+falseDown, sum.onDrained+onDrained
		t.Logf("cut-%s: placed=%d refused=%d false_downs=%d on_drained=%d not_ready_after=%v drain_on_the_majority_after=%v ready_again_after=%v",
			role, placed, refused, falseDown, onDrained, stepped.Round(time.Millisecond), visible.Round(time.Millisecond), back.Round(time.Millisecond))
		if onDrained > 0 || falseDown > 0 {
			t.Errorf("after the heal: %d sessions on the drained server, %d false downs", onDrained, falseDown)
		}
	}
}

// beatAll beats for servers, as their agents would, through the member at
// url every 200 ms until the returned stop.
func beatAll(t *testing.T, url string, servers []string) (stop func()) {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo("sim", "sim-password"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, s := range servers {
				_ = nc.Publish("simgate.load."+node(s), []byte(fmt.Sprintf(
					`{"v":1,"server":%q,"status":"up","load":10,"maxSessions":1000,"interval":1}`, s)))
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait(); nc.Close() }) }
	t.Cleanup(stop)
	return stop
}

// tryAdminAction drains or undrains server as the admin, on f's monitor
// page; an error while the cluster's state cannot keep it (503: try again).
func tryAdminAction(f *farm, action, server string) error {
	req, _ := http.NewRequest(http.MethodPost, f.base+"/monitor",
		bytes.NewReader([]byte(fmt.Sprintf(`{"action":%q,"server":%q}`, action, server))))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("admin:admin-password")))
	req.Header.Set("X-Simgate-Action", action)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", action, server, resp.Status)
	}
	return nil
}

// TestCutMembersAgentsFailOver: issue 30. The member an agent is
// connected to is cut from the other two (not from the agent): it sends
// the agent away when it loses its majority, the agent reconnects to a
// member of the majority, and no member judges the server down.
func TestCutMembersAgentsFailOver(t *testing.T) {
	const server = "127.0.0.1:3311"
	p := startPartitionNet(t, []string{server})
	var urls []string
	for _, f := range p.members {
		urls = append(urls, f.nats)
	}
	agent := startEnv(t, "", []string{"HOST_PROC=" + quietProc(t), "SIMGATE_PASSWORD=sim-password"}, p.members[0].agent,
		"-nats", strings.Join(urls, ","), "-user", "sim", "-server", server,
		"-interval", "1s", "-probe", "off", "-simulation-config", "off")
	for _, f := range p.members {
		f.waitState(t, server, 15*time.Second, "up")
	}
	// The member the agent is on: its log says which.
	cut := -1
	testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, line := range strings.Split(agent.out.String(), "\n") {
			if !strings.Contains(line, `msg="connected to NATS"`) {
				continue
			}
			for i, f := range p.members {
				if strings.Contains(line, "url="+f.nats) {
					cut = i
					return nil
				}
			}
		}
		return fmt.Errorf("the agent has not said where it connected: %s", agent.out.String())
	})
	before := downs(t, p.members)
	begin := time.Now()
	p.cut(t, cut, true)
	var majority []*farm
	for i, f := range p.members {
		if i != cut {
			majority = append(majority, f)
		}
	}
	// The agent reconnects to a member of the majority.
	var moved time.Duration
	testutil.WaitFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if strings.Count(agent.out.String(), "reconnected to NATS") == 0 {
			return fmt.Errorf("the agent has not reconnected")
		}
		moved = time.Since(begin)
		return nil
	})
	// Over two silence timeouts, the majority has it up all along.
	watch := time.NewTicker(50 * time.Millisecond)
	defer watch.Stop()
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); <-watch.C {
		for _, f := range majority {
			if s := f.servers(t)[server]; s.State != "up" {
				t.Fatalf("the majority has the server %q after the cut", s.State)
			}
		}
	}
	p.cut(t, cut, false)
	for _, f := range p.members {
		_ = f.waitState(t, server, 15*time.Second, "up")
	}
	falseDown := falseDowns(t, p.members, before, 0)
	t.Logf("fault figures: scenario=cut-agents-member placed=0 refused=0 errors=0 false_downs=%d agent_moved_after=%v",
		falseDown, moved.Round(time.Millisecond))
	if falseDown > 0 {
		t.Errorf("%d false downs", falseDown)
	}
}
