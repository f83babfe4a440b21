package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/simgate/simgate/internal/testutil"
)

// simStub is a simulation server's /client as the Webots client meets it:
// it records the start message and every message that arrives, answers the
// start with a webots: line, echoes the rest, and counts open sessions.
type simStub struct {
	entry   string // 127.0.0.1:PORT, as simulationServers lists it
	srv     *http.Server
	mu      sync.Mutex
	starts  []string
	got     []string
	conns   map[*websocket.Conn]bool
	arrived chan string // each start message
	closed  chan string // the start message of each session that ended
	opened  func(n int) // told the open sessions' count when it changes
}

func newSimStub(t *testing.T) *simStub {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &simStub{entry: ln.Addr().String(), conns: map[*websocket.Conn]bool{},
		arrived: make(chan string, 1000), closed: make(chan string, 1000)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/client", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_, first, err := c.ReadMessage()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.starts = append(s.starts, string(first))
		s.conns[c] = true
		n := len(s.conns)
		s.mu.Unlock()
		s.count(n)
		s.arrived <- string(first)
		_ = c.WriteMessage(websocket.TextMessage, []byte("webots:ws://"+s.entry+"/stream"))
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				break
			}
			s.mu.Lock()
			s.got = append(s.got, string(m))
			s.mu.Unlock()
			_ = c.WriteMessage(websocket.TextMessage, append([]byte("echo: "), m...))
		}
		s.mu.Lock()
		delete(s.conns, c)
		n = len(s.conns)
		s.mu.Unlock()
		s.count(n)
		s.closed <- string(first)
	})
	s.srv = &http.Server{Handler: mux}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *simStub) count(n int) {
	if s.opened != nil {
		s.opened(n)
	}
}

// sessions is how many sessions run on s.
func (s *simStub) sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// hangUp closes every session from the simulation server's side.
func (s *simStub) hangUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = c.Close()
	}
}

// visitor is the Webots client's side of PROTOCOL §1.2: it fetched
// /session once, opened <answer>/client and sent its start message.
type visitor struct {
	t     *testing.T
	c     *websocket.Conn
	start string
	lines chan string
	done  chan struct{}
}

// visit asks /session as addr (X-Forwarded-For from the local Apache) and
// opens the answer's /client with a start message for world.
func visit(t *testing.T, f *farm, addr, world string) (*visitor, string) {
	t.Helper()
	q := ""
	if world != "" {
		q = "?url=" + world
	}
	_, answer, err := getAs(f.base+"/session"+q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(answer, "Error:") {
		return nil, answer
	}
	return openClient(t, answer, world), answer
}

func openClient(t *testing.T, answer, world string) *visitor {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(answer+"/client", nil)
	if err != nil {
		t.Fatalf("opening %s/client: %v", answer, err)
	}
	v := &visitor{t: t, c: c, lines: make(chan string, 100), done: make(chan struct{})}
	v.start = fmt.Sprintf(`{"start":{"url":%q,"mode":"mjpeg"}}`, world)
	if err := c.WriteMessage(websocket.TextMessage, []byte(v.start)); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(v.done)
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			v.lines <- string(m)
		}
	}()
	t.Cleanup(func() { c.Close() })
	return v
}

// expect reads lines until one starts with prefix, within d; it returns it.
func (v *visitor) expect(prefix string, d time.Duration) string {
	v.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case l := <-v.lines:
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-v.done:
			select {
			case l := <-v.lines:
				if strings.HasPrefix(l, prefix) {
					return l
				}
				continue
			default:
			}
			v.t.Fatalf("the socket closed before a %q line", prefix)
		case <-deadline:
			v.t.Fatalf("no %q line within %v", prefix, d)
		}
	}
}

// closedWithin waits for the visitor's socket to close.
func (v *visitor) closedWithin(d time.Duration) {
	v.t.Helper()
	select {
	case <-v.done:
	case <-time.After(d):
		v.t.Fatalf("the visitor's socket still open after %v", d)
	}
}

// TestWaitingRoom: PROTOCOL §1.2 as the Webots client meets it. Three
// visitors on a full farm are told their places; the first closes its tab
// and the others move up; one seat frees and exactly the first in line is
// seated, its start message arriving unchanged; messages relay both ways;
// either side closing closes the other.
func TestWaitingRoom(t *testing.T) {
	sim := newSimStub(t)
	f := startFarm(t, map[string]any{"simulationServers": []string{sim.entry}})
	p := f.publisher(t, "waitroom-test")
	beat := func(load float64, sessions int) {
		// 5 % a session (maxSessions 20): at 90 % one seat is free.
		p.publish(sim.entry, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":%g,"sessions":%d,"maxSessions":20,"interval":60}`, sim.entry, load, sessions)))
	}
	beat(99, 0)
	f.waitState(t, sim.entry, 5*time.Second, "full")

	const world = "https://github.com/cyberbotics/webots/blob/R2025a/projects/robots/gctronic/e-puck/worlds/e-puck.wbt"
	var vs []*visitor
	for i := range 3 {
		v, answer := visit(t, f, fmt.Sprintf("198.51.100.%d", 10+i), world)
		if v == nil || !strings.Contains(answer, "/wait/") || !strings.HasPrefix(answer, "ws://127.0.0.1:") {
			t.Fatalf("visitor %d on a full farm got %q, want a waiting-room URL", i+1, answer)
		}
		if got := v.expect("queue: ", 2*time.Second); got != fmt.Sprintf("queue: %d", i+1) {
			t.Fatalf("visitor %d told %q", i+1, got)
		}
		if l := v.expect("loading: ", 2*time.Second); !strings.Contains(l, fmt.Sprint(i+1)) {
			t.Errorf("visitor %d's loading line %q names no place", i+1, l)
		}
		vs = append(vs, v)
	}
	if got := f.servers(t); got[sim.entry].State != "full" {
		t.Fatalf("server %v", got[sim.entry])
	}
	var doc struct {
		Queue struct {
			Waiting int `json:"waiting"`
		} `json:"queue"`
	}
	testutil.WaitFor(t, 2*time.Second, 20*time.Millisecond, func() error {
		_, body, _ := get(f.base + "/api/servers")
		if err := json.Unmarshal([]byte(body), &doc); err != nil || doc.Queue.Waiting != 3 {
			return fmt.Errorf("/api/servers queue = %+v (%v), want 3 waiting", doc.Queue, err)
		}
		return nil
	})

	// The first closes its tab: the others move up within 1 s.
	vs[0].c.Close()
	if got := vs[1].expect("queue: ", time.Second); got != "queue: 1" {
		t.Errorf("second visitor told %q after the first left, want queue: 1", got)
	}
	if got := vs[2].expect("queue: ", time.Second); got != "queue: 2" {
		t.Errorf("third visitor told %q after the first left, want queue: 2", got)
	}

	// One seat frees: exactly the first in line is seated.
	beat(90, 0)
	select {
	case start := <-sim.arrived:
		if start != vs[1].start {
			t.Fatalf("the simulation server got %q, want the seated visitor's start message %q unchanged", start, vs[1].start)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("nobody seated within 3 s of a seat freeing")
	}
	if l := vs[1].expect("webots:", 2*time.Second); l != "webots:ws://"+sim.entry+"/stream" {
		t.Errorf("the simulation server's line reached the visitor as %q", l)
	}
	if got := vs[2].expect("queue: ", 2*time.Second); got != "queue: 1" {
		t.Errorf("third visitor told %q once the second was seated, want queue: 1", got)
	}
	select {
	case s := <-sim.arrived:
		t.Fatalf("a second visitor was seated on one free seat: %q", s)
	case <-time.After(300 * time.Millisecond):
	}
	// Both ways, unchanged.
	if err := vs[1].c.WriteMessage(websocket.TextMessage, []byte("pause")); err != nil {
		t.Fatal(err)
	}
	if l := vs[1].expect("echo: ", 2*time.Second); l != "echo: pause" {
		t.Errorf("relayed answer %q", l)
	}
	// The visitor closes: the simulation server's socket closes within 1 s.
	vs[1].c.Close()
	select {
	case <-sim.closed:
	case <-time.After(time.Second):
		t.Fatal("the simulation server's socket still open 1 s after the visitor left")
	}

	// The session count shows the seat taken (the booking confirmed) at a
	// load with room for one more: the third is seated; then the simulation
	// server ends it and the visitor's socket closes within 1 s.
	beat(90, 1)
	select {
	case start := <-sim.arrived:
		if start != vs[2].start {
			t.Fatalf("got %q, want the third visitor's start", start)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the third visitor was not seated")
	}
	vs[2].expect("webots:", 2*time.Second)
	sim.hangUp()
	vs[2].closedWithin(time.Second)

	m := f.scrape(t)
	if got := m.value("simgate_queue_seated_total"); got != 2 {
		t.Errorf("simgate_queue_seated_total = %v, want 2", got)
	}
	if got := m.value("simgate_queue_waiting"); got != 0 {
		t.Errorf("simgate_queue_waiting = %v, want 0", got)
	}
}

// TestWaitingRoomRefusals: a forged ticket gets no place; queue.maxWait
// ends a wait with an error: line; no server up, or the room off: the
// original's sentence.
func TestWaitingRoomRefusals(t *testing.T) {
	sim := newSimStub(t)
	f := startFarm(t, map[string]any{"simulationServers": []string{sim.entry}, "queue": map[string]any{"maxWait": 1}})
	p := f.publisher(t, "waitroom-refusals")
	p.publish(sim.entry, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":99,"sessions":0,"maxSessions":20,"interval":60}`, sim.entry)))
	f.waitState(t, sim.entry, 5*time.Second, "full")

	port := strings.TrimPrefix(f.base, "http://127.0.0.1:")
	forged := openClient(t, "ws://127.0.0.1:"+port+"/wait/"+strings.Repeat("ab", 16), "")
	if l := forged.expect("error: ", 2*time.Second); l == "" {
		t.Fatal("no error line")
	}
	forged.closedWithin(2 * time.Second)

	v, answer := visit(t, f, "198.51.100.40", "")
	if v == nil {
		t.Fatalf("got %q", answer)
	}
	// A ticket is used once.
	again := openClient(t, answer, "")
	again.expect("error: ", 2*time.Second)
	v.expect("queue: 1", 2*time.Second)
	v.expect("error: ", 4*time.Second) // queue.maxWait of 1 s
	v.closedWithin(2 * time.Second)
	if got := f.scrape(t).value("simgate_queue_left_total", "reason", "max-wait"); got != 1 {
		t.Errorf("simgate_queue_left_total{reason=max-wait} = %v", got)
	}

	// The server goes: nobody could serve, the original's sentence.
	p.publish(sim.entry, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"leaving","load":0,"interval":60}`, sim.entry)))
	f.waitState(t, sim.entry, 5*time.Second, "down")
	if _, body, _ := getAs(f.base+"/session", "198.51.100.41"); body != "Error: no simulation server available at the moment." {
		t.Errorf("no server up: %q", body)
	}

	// The room off: a full farm answers as the original did.
	off := startFarm(t, map[string]any{"simulationServers": []string{sim.entry}, "queue": map[string]any{"enabled": false}})
	op := off.publisher(t, "waitroom-off")
	op.publish(sim.entry, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":99,"interval":60}`, sim.entry)))
	off.waitState(t, sim.entry, 5*time.Second, "full")
	if _, body, _ := getAs(off.base+"/session", "198.51.100.42"); body != "Error: no simulation server available at the moment." {
		t.Errorf("room off: %q", body)
	}
}

// TestWaitingRoomURL: the waiting-room URL's forms (PROTOCOL §1.2): wss://
// host/port/wait/… behind Apache (ssl or portRewrite), the host the visitor
// asked; ws://host:port/wait/… without.
func TestWaitingRoomURL(t *testing.T) {
	sim := newSimStub(t)
	f := startFarm(t, map[string]any{"simulationServers": []string{sim.entry}, "ssl": true, "portRewrite": true, "server": "sessions.example.org"})
	p := f.publisher(t, "waitroom-url")
	p.publish(sim.entry, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":99,"interval":60}`, sim.entry)))
	f.waitState(t, sim.entry, 5*time.Second, "full")
	port := strings.TrimPrefix(f.base, "http://127.0.0.1:")
	req, _ := http.NewRequest(http.MethodGet, f.base+"/session", nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.50")
	req.Header.Set("X-Forwarded-Host", "webots.example.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(data)
	if !strings.HasPrefix(body, "wss://webots.example.com/"+port+"/wait/") || len(body) < len("wss://webots.example.com/"+port+"/wait/")+32 {
		t.Errorf("behind Apache: %q", body)
	}
}

// TestClassWaitsItsTurn: issue 29. A class of 100 behind one school
// address asks within half a second, default limits, 10 servers with room
// for 170: all 100 are seated within 20 s, none refused, none above 15 on
// a server. The address's requests past its booking cap wait in line and
// are seated as the earlier bookings confirm.
func TestClassWaitsItsTurn(t *testing.T) {
	var sims []*simStub
	var entries []string
	for range 10 {
		s := newSimStub(t)
		sims = append(sims, s)
		entries = append(entries, s.entry)
	}
	f := startFarm(t, map[string]any{"simulationServers": entries})
	p := f.publisher(t, "class-test")
	stop := make(chan struct{})
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, s := range sims {
				n := s.sessions()
				// 5 % a session over 10 % idle: 17 sessions of room each.
				data := fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":%d,"sessions":%d,"maxSessions":20,"interval":0.2}`, s.entry, 10+5*n, n)
				if err := p.nc.Publish("simgate.load."+node(s.entry), []byte(data)); err != nil {
					return
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); beats.Wait() })
	for _, s := range entries {
		f.waitState(t, s, 5*time.Second, "up")
	}
	const world = "https://github.com/cyberbotics/webots/blob/R2025a/projects/robots/gctronic/e-puck/worlds/e-puck.wbt"
	begin := time.Now()
	answers := make([]string, 100)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 5 * time.Millisecond) // the class asks over half a second
			_, answers[i], _ = getAs(f.base+"/session?url="+world, "192.0.2.100")
		}()
	}
	wg.Wait()
	direct, waiting := 0, 0
	for i, a := range answers {
		switch {
		case strings.Contains(a, "/wait/"):
			waiting++
		case strings.HasPrefix(a, "ws://127.0.0.1:"):
			direct++
		default:
			t.Fatalf("student %d got %q", i, a)
		}
		openClient(t, a, world)
	}
	arrived := make(chan struct{}, 100)
	for _, s := range sims {
		go func() {
			for range s.arrived {
				arrived <- struct{}{}
			}
		}()
	}
	deadline := time.After(20 * time.Second)
	for seated := 0; seated < 100; seated++ {
		select {
		case <-arrived:
		case <-deadline:
			t.Fatalf("%d of 100 seated within 20 s (%d placed at once, %d waited)", seated, direct, waiting)
		}
	}
	took := time.Since(begin)
	per := map[string]int{}
	for _, s := range sims {
		per[s.entry] = s.sessions()
		if n := s.sessions(); n > 15 {
			t.Errorf("%d students on %s, want at most 15", n, s.entry)
		}
	}
	t.Logf("a class of 100: %d placed at once, %d waited; all seated in %v; per server %v", direct, waiting, took.Round(time.Millisecond), per)
	testutil.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if n := f.scrape(t).value("simgate_queue_waiting"); n != 0 {
			return fmt.Errorf("%v still waiting", n)
		}
		return nil
	})
}

// TestWaitingRoomAcrossACluster: one line across a 3-member cluster. Each
// visitor asks /session on one member and opens its socket on another;
// their places are the order they came in; one seat frees and exactly the
// first in line is seated, wherever its socket is; a member that goes
// takes its waiters out of the line, and the ones behind move up.
func TestWaitingRoomAcrossACluster(t *testing.T) {
	sim := newSimStub(t)
	c := startCluster(t, 3, map[string]any{"simulationServers": []string{sim.entry}})
	p := c.members[0].publisher(t, "waitroom-cluster")
	beat := func(load float64, sessions int) {
		p.publish(sim.entry, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":%g,"sessions":%d,"maxSessions":20,"interval":60}`, sim.entry, load, sessions)))
	}
	beat(99, 0)
	for _, m := range c.members {
		m.waitState(t, sim.entry, 5*time.Second, "full")
	}
	var vs []*visitor
	for i := range 4 {
		asked, opened := c.members[i%3], c.members[(i+1)%3]
		_, answer, err := getAs(asked.base+"/session", fmt.Sprintf("198.51.100.%d", 60+i))
		if err != nil || !strings.Contains(answer, "/wait/") {
			t.Fatalf("visitor %d: %q, %v", i+1, answer, err)
		}
		_, ticket, _ := strings.Cut(answer, "/wait/")
		v := openClient(t, strings.Replace(opened.base, "http://", "ws://", 1)+"/wait/"+ticket, "")
		if got := v.expect("queue: ", 3*time.Second); got != fmt.Sprintf("queue: %d", i+1) {
			t.Fatalf("visitor %d (asked member %d, socket on member %d) told %q", i+1, i%3, (i+1)%3, got)
		}
		vs = append(vs, v)
	}
	// The first leaves: everyone moves up, on every member.
	vs[0].c.Close()
	for i, v := range vs[1:] {
		if got := v.expect("queue: ", 2*time.Second); got != fmt.Sprintf("queue: %d", i+1) {
			t.Errorf("visitor %d told %q after the first left", i+2, got)
		}
	}
	// One seat: exactly the first in line (its socket on member 2).
	beat(90, 0)
	select {
	case start := <-sim.arrived:
		if start != vs[1].start {
			t.Fatalf("seated %q, want the first in line's start %q", start, vs[1].start)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nobody seated within 5 s of a seat freeing")
	}
	vs[1].expect("webots:", 2*time.Second)
	select {
	case s := <-sim.arrived:
		t.Fatalf("a second visitor seated on one free seat: %q", s)
	case <-time.After(300 * time.Millisecond):
	}
	for i, v := range vs[2:] {
		if got := v.expect("queue: ", 2*time.Second); got != fmt.Sprintf("queue: %d", i+1) {
			t.Errorf("visitor %d told %q once the first was seated", i+3, got)
		}
	}
	// Visitor 3's socket is on member 0, visitor 4's on member 1: member 0
	// goes, and visitor 4 is first in line within a few seconds.
	_, _ = c.members[0].coord.stop(t, syscall.SIGKILL, 10*time.Second)
	vs[2].closedWithin(2 * time.Second)
	begin := time.Now()
	for got := ""; got != "queue: 1"; {
		got = vs[3].expect("queue: ", 15*time.Second-time.Since(begin)) // its place again every 10 s meanwhile
	}
	t.Logf("a member killed: its waiters out of the line in %v", time.Since(begin).Round(time.Millisecond))
}
