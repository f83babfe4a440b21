package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/simgate/simgate/internal/testutil"
)

const noServer = "Error: no simulation server available at the moment."

func checkCORS(t *testing.T, resp *http.Response) {
	t.Helper()
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":  "*",
		"Access-Control-Allow-Headers": "x-requested-with",
		"Access-Control-Allow-Methods": "POST, GET, OPTIONS",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s %s: %s = %q, want %q", resp.Request.Method, resp.Request.URL.Path, k, got, want)
		}
	}
}

func expectText(t *testing.T, url, want string) {
	t.Helper()
	resp, body, err := get(url)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != want || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("GET %s = %d %q (%s), want 200 %q text/plain", url, resp.StatusCode, body, resp.Header.Get("Content-Type"), want)
	}
	checkCORS(t, resp)
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readText(t *testing.T, c *websocket.Conn, within time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	typ, msg, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reading a WebSocket message: %v", err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("message type %d, want text", typ)
	}
	return string(msg)
}

// TestContract walks every client endpoint of PROTOCOL.md §1 with two real
// agent processes and one direct publisher on a real coordinator.
func TestContract(t *testing.T) {
	const agentA, agentB, direct = "127.0.0.1:2101", "127.0.0.1/2102", "127.0.0.1:2103"
	f := startFarm(t, map[string]any{"simulationServers": []string{agentA, agentB, direct}})
	ws := strings.Replace(f.base, "http://", "ws://", 1)

	// Nothing heard yet: every answer says so.
	expectText(t, f.base+"/", "0")
	expectText(t, f.base+"/session", noServer)
	expectText(t, f.base+"/load", "-1")
	avail := dial(t, ws+"/")
	if got := readText(t, avail, 2*time.Second); got != "0" {
		t.Fatalf("first message on / = %q, want 0", got)
	}
	for _, s := range f.servers(t) {
		if s.State != "unknown" || s.LastSeen != nil {
			t.Errorf("%s before any heartbeat: %+v", s.Server, s)
		}
	}

	// A heartbeat makes a server available, and / pushes 1.
	pub := f.publisher(t, "tester")
	pub.beat(direct, "up", 10)
	if got := readText(t, avail, 2*time.Second); got != "1" {
		t.Fatalf("push on / after a server came up = %q, want 1", got)
	}
	expectText(t, f.base+"/", "1")
	expectText(t, f.base+"/load", "10")
	expectText(t, f.base+"/session", "ws://"+direct)

	// /session over WebSocket: one text message, then a normal close.
	sess := dial(t, ws+"/session")
	if got := readText(t, sess, 2*time.Second); got != "ws://"+direct {
		t.Errorf("WebSocket /session = %q", got)
	}
	_ = sess.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err := sess.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("after the answer: %v, want a close frame 1000", err)
	}

	// Two real agents join.
	a := f.startAgent(t, agentA)
	b := f.startAgent(t, agentB)
	f.waitState(t, agentA, 5*time.Second, "up", "full")
	f.waitState(t, agentB, 5*time.Second, "up", "full")
	for _, name := range []string{agentA, agentB} {
		s := f.servers(t)[name]
		if s.LastSeen == nil || s.CPU == nil || s.MaxSessions != 100 {
			t.Errorf("%s as reported: %+v", name, s)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 30; i++ {
		_, body, err := get(f.base + "/session")
		if err != nil {
			t.Fatal(err)
		}
		seen[body] = true
	}
	for body := range seen {
		if body != "ws://"+agentA && body != "ws://"+agentB && body != "ws://"+direct {
			t.Errorf("/session answered %q, not a configured entry", body)
		}
	}

	// OPTIONS on every endpoint: 204 with the CORS headers.
	for _, path := range []string{"/session", "/", "/load", "/monitor", "/api/servers"} {
		req, _ := http.NewRequest(http.MethodOptions, f.base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("OPTIONS %s = %d", path, resp.StatusCode)
		}
		checkCORS(t, resp)
	}
	resp, body, _ := get(f.base + "/monitor")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, agentA) || !strings.Contains(body, direct) {
		t.Errorf("/monitor: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	checkCORS(t, resp)
	resp, body, _ = get(f.base + "/healthz")
	if resp.StatusCode != 200 || body != "ok" {
		t.Errorf("/healthz = %d %q", resp.StatusCode, body)
	}
	resp, _, _ = get(f.base + "/metrics")
	if resp.StatusCode != 200 {
		t.Errorf("/metrics = %d", resp.StatusCode)
	}

	// SIGKILL: the connection closes and the server leaves placement at once.
	_ = b.cmd.Process.Kill()
	took := f.waitState(t, agentB, time.Second, "down")
	t.Logf("agent killed: down after %v", took)

	// SIGTERM: a leaving heartbeat, exit 0 within 2 s.
	code, took := a.stop(t, syscall.SIGTERM, 2*time.Second)
	if code != 0 {
		t.Errorf("agent exit status %d after SIGTERM", code)
	}
	t.Logf("agent stopped in %v", took)
	f.waitState(t, agentA, time.Second, "down")
	if r := f.servers(t)[agentA].Reason; !strings.Contains(r, "planned") {
		t.Errorf("reason after SIGTERM = %q, want the planned stop", r)
	}

	// The last server leaves: / pushes 0, /session and /load say none.
	pub.beat(direct, "leaving", 10)
	testutil.WaitFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		_ = avail.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, msg, err := avail.ReadMessage()
		if err != nil {
			return err
		}
		if string(msg) != "0" {
			return fmt.Errorf("push %q", msg)
		}
		return nil
	})
	expectText(t, f.base+"/", "0")
	expectText(t, f.base+"/session", noServer)
	expectText(t, f.base+"/load", "-1")

	// The coordinator stops on SIGTERM: WebSocket clients get a close frame, exit 0.
	closed := make(chan error, 1)
	go func() {
		_ = avail.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := avail.ReadMessage()
		closed <- err
	}()
	code, _ = f.coord.stop(t, syscall.SIGTERM, 10*time.Second)
	if code != 0 {
		t.Errorf("coordinator exit status %d after SIGTERM", code)
	}
	if err := <-closed; !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("WebSocket client at coordinator stop: %v, want close 1001", err)
	}
}

func TestAPIServersShape(t *testing.T) {
	f := startFarm(t, map[string]any{"simulationServers": []string{"127.0.0.1/3107", "127.0.0.1/3106"}})
	f.publisher(t, "x").beat("127.0.0.1/3106", "up", 42.5)
	f.waitState(t, "127.0.0.1/3106", 2*time.Second, "up")
	resp, body, err := get(f.base + "/api/servers")
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var doc struct {
		Servers []map[string]any `json:"servers"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	list := doc.Servers
	if len(list) != 2 || list[0]["server"] != "127.0.0.1/3107" || list[1]["server"] != "127.0.0.1/3106" {
		t.Fatalf("not in configuration order: %s", body)
	}
	if list[0]["state"] != "unknown" || list[0]["lastSeen"] != nil {
		t.Errorf("never heard from: %v", list[0])
	}
	if list[1]["load"] != 42.5 || list[1]["maxSessions"] != 100.0 {
		t.Errorf("reported: %v", list[1])
	}
	if _, err := time.Parse(time.RFC3339, list[1]["lastSeen"].(string)); err != nil {
		t.Errorf("lastSeen: %v", err)
	}
	for _, k := range []string{"server", "state", "load", "sessions", "maxSessions", "lastSeen"} {
		if _, ok := list[1][k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
}

func TestVersionFlags(t *testing.T) {
	coord, agent := testutil.Binaries(t)
	for _, bin := range []string{coord, agent} {
		out, err := exec.Command(bin, "-version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "simgate ") {
			t.Errorf("%s -version: %q, %v", bin, out, err)
		}
		out, err = exec.Command(bin, "-h").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("%s -h: %v\n%s", bin, err, out)
		}
	}
}

// TestBookingsAreHonest: PROTOCOL §1. With the waiting room off, an
// address at its cap of unconfirmed bookings (1 here,
// http.maxBookingsPerAddress) gets one of them again and books nothing
// (with it on, the address waits in line: TestClassWaitsItsTurn); HEAD
// books nothing; another visitor is placed past the first one's booking.
func TestBookingsAreHonest(t *testing.T) {
	const a, b = "127.0.0.1/2501", "127.0.0.1/2502"
	f := startFarm(t, map[string]any{"simulationServers": []string{a, b}, "http": map[string]any{"maxBookingsPerAddress": 1},
		"queue": map[string]any{"enabled": false}})
	p := f.publisher(t, "bookings-test")
	for _, s := range []string{a, b} {
		p.send(s, "up", 10, 60) // equal loads; a long interval keeps every booking unconfirmed
		f.waitState(t, s, 5*time.Second, "up")
	}
	handed := func() float64 { return f.scrape(t).value("simgate_sessions_handed_out") }
	_, first, err := getAs(f.base+"/session?url=https://github.com/x/y/blob/main/worlds/w.wbt", "198.51.100.7")
	if err != nil || !strings.HasPrefix(first, "ws://") {
		t.Fatalf("first answer %q, %v", first, err)
	}
	for range 5 {
		_, again, _ := getAs(f.base+"/session?url=https://github.com/x/y/blob/main/worlds/w.wbt", "198.51.100.7")
		if again != first {
			t.Fatalf("repeat answered %q, want %q again", again, first)
		}
	}
	req, _ := http.NewRequest(http.MethodHead, f.base+"/session", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("HEAD /session: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := handed(); got != 1 {
		t.Errorf("sessions handed out = %v after one visitor's repeats and a HEAD, want 1", got)
	}
	_, other, _ := getAs(f.base+"/session", "198.51.100.8")
	if other == first || !strings.HasPrefix(other, "ws://") {
		t.Errorf("a second visitor got %q beside the first's booking on %q, want the other server", other, first)
	}
}

// TestClassroomBehindOneAddress: PROTOCOL §1, the default cap. 30 students
// behind one school address ask for the same world within a second on 10
// equal servers: none refused, at most 5 on any server; the same address
// asking on and on holds no more than half the farm's free room.
func TestClassroomBehindOneAddress(t *testing.T) {
	var servers []string
	for i := range 10 {
		servers = append(servers, fmt.Sprintf("127.0.0.1/%d", 3200+i))
	}
	f := startFarm(t, map[string]any{"simulationServers": servers, "http": map[string]any{"sessionRate": 1000, "sessionBurst": 1000}})
	p := f.publisher(t, "classroom-test")
	for _, s := range servers {
		// 5 % a session (maxSessions 20), 40 % load: 11 sessions of room each.
		p.publish(s, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":40,"sessions":0,"maxSessions":20,"interval":60}`, s)))
	}
	for _, s := range servers {
		f.waitState(t, s, 5*time.Second, "up")
	}
	const world = "https://github.com/cyberbotics/webots/blob/R2025a/projects/robots/gctronic/e-puck/worlds/e-puck.wbt"
	per := map[string]int{}
	for range 30 {
		_, body, err := getAs(f.base+"/session?url="+world, "192.0.2.30")
		if err != nil || !strings.HasPrefix(body, "ws://") {
			t.Fatalf("a student got %q, %v", body, err)
		}
		per[body]++
	}
	t.Logf("30 students behind one address on 10 servers: %v", per)
	for s, n := range per {
		if n > 5 {
			t.Errorf("%d students on %s, want at most 5: %v", n, s, per)
		}
	}
	// The same address on and on: its bookings stop at its cap (40), under
	// half the farm's room (110 sessions), and another visitor is placed.
	for range 200 {
		getAs(f.base+"/session?url="+world, "192.0.2.30")
	}
	if got := f.scrape(t).value("simgate_sessions_handed_out"); got > 40 {
		t.Errorf("one address booked %v sessions, want at most its cap of 40", got)
	}
	if _, body, _ := getAs(f.base+"/session", "198.51.100.99"); !strings.HasPrefix(body, "ws://") {
		t.Errorf("another visitor got %q", body)
	}
}
