package httpapi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/testutil"
)

// serve runs the API behind the real http.Server with limits l on a real
// socket, with one server up, until the test ends.
func serve(t *testing.T, l Limits, o Options) (addr string, api *API) {
	t.Helper()
	reg := alloc.New(alloc.Options{Servers: []string{"a.test/2000"}, Threshold: 95, Seed: 1})
	if err := reg.Apply(alloc.Report{Server: "a.test/2000", Status: alloc.StatusUp, Load: 10, Sessions: -1,
		Interval: time.Minute, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	o.Registry = reg
	o.Logger = slog.New(slog.DiscardHandler)
	api = New(o)
	srv := NewServer(api, l, o.Logger)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		api.Close(time.Second)
		_ = srv.Close()
	})
	return ln.Addr().String(), api
}

func TestTricklingHeadersAreCut(t *testing.T) {
	l := DefaultLimits()
	l.ReadHeader = 300 * time.Millisecond
	addr, _ := serve(t, l, Options{})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	begin := time.Now()
	cut := make(chan error, 1)
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(conn) // whatever the server says, it must then close
		cut <- err
	}()
	_, _ = io.WriteString(conn, "GET /session HTTP/1.1\r\nHost: x\r\n")
	tick := time.NewTicker(50 * time.Millisecond) // the slow client's own pace
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case err := <-cut:
			if err != nil && !errors.Is(err, syscall.ECONNRESET) { // a reset is a cut too
				t.Fatalf("the connection was not closed by the server: %v", err)
			}
			took := time.Since(begin)
			if took > 5*time.Second {
				t.Errorf("cut after %v; the header timeout is %v", took, l.ReadHeader)
			}
			t.Logf("a client trickling a header line every 50 ms was cut after %v (%d lines)", took.Round(time.Millisecond), i)
			return
		case <-tick.C:
			_, _ = fmt.Fprintf(conn, "X-Slow-%d: y\r\n", i)
		}
	}
}

func TestOversizedHeaderRefused(t *testing.T) {
	addr, _ := serve(t, DefaultLimits(), Options{})
	req, _ := http.NewRequest("GET", "http://"+addr+"/session", nil)
	req.Header.Set("X-Big", strings.Repeat("b", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 64 KiB header got %s, want 431", resp.Status)
	}
}

func TestThousandWebSocketClientsLeaveNoGoroutine(t *testing.T) {
	addr, api := serve(t, DefaultLimits(), Options{})
	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	baseline := settle()
	const n = 1000
	conns := make([]*websocket.Conn, 0, n)
	for i := range n {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "1" {
			t.Fatalf("client %d read %q, %v", i, msg, err)
		}
		conns = append(conns, c)
	}
	if got := api.WebSocketClients(); got != n {
		t.Errorf("%d clients counted, want %d", got, n)
	}
	peak := runtime.NumGoroutine()
	for _, c := range conns {
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		c.Close()
	}
	testutil.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := api.WebSocketClients(); got != 0 {
			return fmt.Errorf("%d clients still counted", got)
		}
		if g := settle(); g > baseline+2 {
			return fmt.Errorf("%d goroutines, baseline %d", g, baseline)
		}
		return nil
	})
	t.Logf("goroutines: %d before, %d with %d clients, back to %d", baseline, peak, n, runtime.NumGoroutine())
}

func TestWebSocketLimits(t *testing.T) {
	addr, api := serve(t, DefaultLimits(), Options{PingInterval: 100 * time.Millisecond, MaxWebSocketClients: 2})

	// A message over the read limit closes the connection (1009).
	big, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	_ = big.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 10*wsReadLimit)))
	_ = big.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err = big.ReadMessage(); err != nil {
			break
		}
	}
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("oversize message: %v, want close 1009", err)
	}

	// A client that never reads never answers a ping: dropped after two intervals.
	mute, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := api.WebSocketClients(); got != 0 {
			return fmt.Errorf("%d clients still connected", got)
		}
		return nil
	})

	// The cap: the third concurrent client is refused.
	for i := range 2 {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		defer c.Close()
		go func() { // answer pings
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third client over a cap of 2: %v %v, want 503", resp, err)
	}
}

func TestRateLimitTripsAndRecovers(t *testing.T) {
	addr, _ := serve(t, DefaultLimits(), Options{Limiter: NewLimiter(20, 5, nil)})
	get := func(xff string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/session", nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(bufio.NewReader(resp.Body))
		return resp.StatusCode, string(b)
	}
	var code int
	var body string
	for i := 0; i < 100; i++ {
		if code, body = get(""); code == http.StatusTooManyRequests {
			break
		}
	}
	if code != http.StatusTooManyRequests || !strings.HasPrefix(body, "Error: ") {
		t.Fatalf("the limit never tripped: last %d %q", code, body)
	}
	// X-Forwarded-For from an untrusted peer changes nothing.
	if code, _ := get("203.0.113.9"); code != http.StatusTooManyRequests {
		t.Errorf("a forged X-Forwarded-For escaped the limit: %d", code)
	}
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if code, body := get(""); code != 200 || !strings.HasPrefix(body, "ws://") {
			return fmt.Errorf("still %d %q", code, body)
		}
		return nil
	})
}

// Clients still connecting while the coordinator stops are either let in
// and closed, or refused with 503; Close never races their admission (the
// race detector saw a WaitGroup grow from zero under Close's Wait).
func TestCloseWhileClientsConnect(t *testing.T) {
	addr, api := serve(t, DefaultLimits(), Options{MaxWebSocketClients: 1000})
	var wg sync.WaitGroup
	connected := make(chan struct{}, 100)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
				if err != nil {
					if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
						t.Errorf("dial during shutdown: %v (response %v)", err, resp)
					}
					return // refused: the API is closing
				}
				select {
				case connected <- struct{}{}:
				default:
				}
				_ = c.Close()
			}
		}()
	}
	for range 16 {
		select {
		case <-connected:
		case <-time.After(10 * time.Second):
			t.Fatal("no client connected")
		}
	}
	api.Close(5 * time.Second)
	wg.Wait()
	if _, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a client after Close: %v, %v", err, resp)
	}
}

// TestNATSSessionIsAVisitor: the farm's NATS service places through
// SessionFor, which counts its caller against /session's rate: a flood from
// one caller is refused with the contract's sentence, another caller is not.
func TestNATSSessionIsAVisitor(t *testing.T) {
	_, api := serve(t, DefaultLimits(), Options{Limiter: NewLimiter(20, 5, nil)})
	limited := 0
	for range 3000 {
		if string(api.SessionFor(alloc.Visitor{Addr: "nats-user:ops"})) == string(limitedBody) {
			limited++
		}
	}
	if limited < 2900 {
		t.Errorf("%d of 3,000 requests from one NATS user limited, want nearly all", limited)
	}
	if got := string(api.SessionFor(alloc.Visitor{Addr: "nats-user:other"})); !strings.HasPrefix(got, "ws://") {
		t.Errorf("another caller: %q", got)
	}
}

// TestLimiterBounded: a million addresses do not grow the limiter past its
// bound; an address that is spending keeps its bucket.
func TestLimiterBounded(t *testing.T) {
	l := NewLimiter(0.01, 5, nil) // a token per 100 s: nothing refills during the test
	for range 10 {
		l.AllowAddr("198.51.100.7") // spending: remembered
	}
	for i := range 3 * maxLimited {
		l.AllowAddr(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	l.mu.Lock()
	n := len(l.clients)
	l.mu.Unlock()
	if n > maxLimited {
		t.Errorf("limiter remembers %d addresses, want at most %d", n, maxLimited)
	}
	if l.AllowAddr("198.51.100.7") {
		t.Error("a spent address was forgotten and let through")
	}
}

// TestLongWorldURLRefused: a ?url= longer than any world's is answered with
// an Error: sentence and books nothing (the holds keep each URL: 12 KiB
// URLs were 1.6 GB of heap in 30 s).
func TestLongWorldURLRefused(t *testing.T) {
	addr, api := serve(t, DefaultLimits(), Options{})
	long := "https://github.com/x/y/blob/main/" + strings.Repeat("a", MaxWorldURL)
	resp, err := http.Get("http://" + addr + "/session?url=" + long)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != string(urlTooLong) {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	if got := string(api.SessionFor(alloc.Visitor{Addr: "x", URL: long})); got != string(urlTooLong) {
		t.Errorf("over NATS: %q", got)
	}
	if h, _ := api.o.Registry.Counts(); h != 0 {
		t.Errorf("%d sessions booked for too long a URL", h)
	}
}

// TestIdleConnectionsCapped: idle keep-alive connections beyond the cap are
// closed, the longest idle first, so that a new visitor is still answered.
func TestIdleConnectionsCapped(t *testing.T) {
	l := DefaultLimits()
	l.MaxConns = 10
	addr, _ := serve(t, l, Options{})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	ask := func(c net.Conn) error {
		if _, err := io.WriteString(c, "GET /session HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	for i := range 30 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if err := ask(c); err != nil {
			t.Fatalf("connection %d was not answered: %v", i, err)
		}
	}
	// The first ones were closed to make room: at most 10 still answer.
	alive := 0
	for _, c := range conns {
		if ask(c) == nil {
			alive++
		}
	}
	if alive > 10 {
		t.Errorf("%d keep-alive connections still open, want at most 10", alive)
	}
}

// TestSilentConnectionsShutNoOneOut: issue 31. 600 connections that send
// nothing shut visitors out once past the cap (the newcomer was closed).
// Now the oldest silent one makes room, and one address holds at most
// silentPerAddr of them: a visitor after them is answered at once.
func TestSilentConnectionsShutNoOneOut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exempt func(string) bool
	}{
		{"one address", nil}, // its own silent ones go first
		{"past the cap", func(string) bool { return true }}, // the cap's oldest silent one goes
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := DefaultLimits()
			l.MaxConns, l.Exempt = 100, tc.exempt
			l.SilentAfter = time.Millisecond // the flood's connections are old by the time the visitor comes
			addr, _ := serve(t, l, Options{})
			var silent []net.Conn
			defer func() {
				for _, c := range silent {
					c.Close()
				}
			}()
			for range 600 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				silent = append(silent, c)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "GET /session HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("a visitor after 600 silent connections: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasPrefix(string(body), "ws://a.test/2000") {
				t.Errorf("answered %q", body)
			}
		})
	}
}

// TestBurstIsNotSilence: a burst of new connections from one address (a
// class, a load test) is not taken for a silent flood: 100 connections
// opened at once, then each asks, and each is answered.
func TestBurstIsNotSilence(t *testing.T) {
	l := DefaultLimits()
	l.MaxConns = 1000
	addr, _ := serve(t, l, Options{})
	conns := make([]net.Conn, 100)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		if _, err := io.WriteString(c, "GET /session HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d of a burst was not answered: %v", i, err)
		}
		resp.Body.Close()
	}
}
