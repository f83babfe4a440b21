package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/testutil"
)

// TestReadyMeansReady: PROTOCOL §1 /readyz. A coordinator serves at once
// but is ready, and places, only once it has heard from every configured
// server (or one silence timeout has passed): before that /readyz is 503
// and says what it waits for, and /session answers as a busy farm.
func TestReadyMeansReady(t *testing.T) {
	const a, b = "127.0.0.1/2801", "127.0.0.1/2802"
	// heartbeatTimeout 30: the silence timeout a start waits for b at most.
	g := startFarmNotReady(t, map[string]any{"simulationServers": []string{a, b}, "heartbeatTimeout": 30})
	p := g.publisher(t, "ready-test")
	p.send(a, "up", 10, 1)
	g.waitState(t, a, 5*time.Second, "up")
	// Its drains come at once; then it waits for b alone.
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		resp, body, _ := get(g.base + "/readyz")
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "waiting to hear from "+b) {
			return fmt.Errorf("/readyz before %s was heard from: %v %q, want 503 naming it", b, resp, body)
		}
		return nil
	})
	if _, got, _ := getAs(g.base+"/session", "198.51.100.20"); got != noServer {
		t.Errorf("/session before ready = %q, want the busy farm's answer", got)
	}
	// Counted under why (issue 34): this member is not ready.
	if n := g.scrape(t).value("simgate_refusals_total", "reason", "not-ready"); n != 1 {
		t.Errorf("simgate_refusals_total{reason=\"not-ready\"} = %v, want 1", n)
	}
	p.send(b, "up", 20, 1)
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		resp, body, _ := get(g.base + "/readyz")
		if resp == nil || resp.StatusCode != 200 {
			return fmt.Errorf("/readyz %v %q", resp, body)
		}
		return nil
	})
	if _, got, _ := getAs(g.base+"/session", "198.51.100.20"); got != "ws://"+a {
		t.Errorf("/session once ready = %q, want ws://%s", got, a)
	}
}

// TestNoSessionToADrainedServerAfterRestart: a drain outlives a restart,
// and no visitor reaches the drained server in the restarted coordinator's
// first moments, while heartbeats say it is the idlest.
func TestNoSessionToADrainedServerAfterRestart(t *testing.T) {
	const idle, busy = "127.0.0.1/2811", "127.0.0.1/2812"
	f := startFarm(t, map[string]any{
		"simulationServers": []string{idle, busy},
		"nats": map[string]any{"listen": "127.0.0.1:0", "users": []map[string]any{
			{"user": "admin", "password": "admin-password", "role": "admin"},
			{"user": "agent", "password": "agent-password", "role": "agent", "servers": []string{idle, busy}},
		}},
	})
	nc, err := nats.Connect(f.nats, nats.UserInfo("admin", "admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request("simgate.api.drain."+node(idle), nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	f.coord.stop(t, syscall.SIGTERM, 15*time.Second)
	f.notReady = true
	f.restart(t)
	// Heartbeats and visitors from the first moment on.
	agent, err := nats.Connect(f.nats, nats.UserInfo("agent", "agent-password"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	for _, hb := range []struct {
		server string
		load   int
	}{{idle, 1}, {busy, 60}} {
		if err := agent.Publish("simgate.load."+node(hb.server),
			fmt.Appendf(nil, `{"v":1,"server":%q,"status":"up","load":%d,"interval":1,"maxSessions":1000}`, hb.server, hb.load)); err != nil {
			t.Fatal(err)
		}
	}
	_ = agent.Flush()
	got := map[string]int{}
	var refused int64
	for i := range 200 {
		// Apache would wait for /readyz; a visitor sent before it is
		// answered as by a busy farm, which is no refusal of a ready member.
		resp, _, _ := get(f.base + "/readyz")
		ready := resp != nil && resp.StatusCode == 200
		_, body, err := getAs(f.base+"/session", fmt.Sprintf("198.51.100.%d", i))
		if err != nil {
			t.Fatal(err)
		}
		got[body]++
		if ready && !strings.HasPrefix(body, "ws://") {
			refused++
		}
	}
	if got["ws://"+idle] > 0 {
		t.Errorf("%d sessions to the drained server after a restart: %v", got["ws://"+idle], got)
	}
	if got["ws://"+busy] == 0 {
		t.Errorf("no session placed at all once ready: %v", got)
	}
	onIdle := got["ws://"+idle]
	figures{placed: int64(got["ws://"+busy] + onIdle), refused: refused, onDrained: &onIdle}.report(t)
}
