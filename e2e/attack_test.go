package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/simgate/simgate/internal/testutil"
)

// Issue 31's attacks, each against a real coordinator (and, where the
// attack came through it, a real Apache with the README's rules), as the
// attacker made them: no secret known.

// wsLogin tries user and password over NATS-over-WebSocket at url, from
// the local address from (a loopback address: an attacker's machine), with
// header added to the handshake, and says whether the server let it in.
func wsLogin(url, from string, header http.Header, user, password string) (bool, error) {
	d := websocket.Dialer{
		HandshakeTimeout: 5 * time.Second,
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}).DialContext,
	}
	c, _, err := d.Dial(url, header)
	if err != nil {
		return false, err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	read := func() (string, error) {
		_, data, err := c.ReadMessage()
		return string(data), err
	}
	if info, err := read(); err != nil || !strings.HasPrefix(info, "INFO ") {
		return false, fmt.Errorf("no INFO: %q %v", info, err)
	}
	connect := fmt.Sprintf("CONNECT {\"user\":%q,\"pass\":%q,\"verbose\":false,\"protocol\":1}\r\nPING\r\n", user, password)
	if err := c.WriteMessage(websocket.BinaryMessage, []byte(connect)); err != nil {
		return false, err
	}
	for {
		msg, err := read()
		switch {
		case strings.Contains(msg, "PONG"):
			return true, nil
		case strings.Contains(msg, "-ERR"):
			return false, nil
		case err != nil:
			return false, nil // closed on a refusal
		}
	}
}

// guess calls try(n) perSecond times a second, each in its own goroutine
// (an attacker does not wait for its answers), until the returned stop is
// called; stop waits for the tries under way.
func guess(perSecond int, try func(n int)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() { defer wg.Done(); try(n) }()
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// TestGuessedAgentBehindApache: wrong passwords for a real agent's user
// at 40 a second, through Apache (NATS over WebSocket, every connection
// from the proxy's address), half of them with an X-Forwarded-For naming
// the real agent's address; the real agent, started in the middle of it,
// is in within 5 s (it was kept out: 0 of 153 tries in 60 s).
func TestGuessedAgentBehindApache(t *testing.T) {
	if testing.Short() {
		t.Skip("a 40/s guess through Apache")
	}
	const server = "127.0.0.1/2611"
	hash, err := bcrypt.GenerateFromPassword([]byte("ws-agent-secret"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	f := startFarm(t, map[string]any{
		"simulationServers": []string{server},
		"nats": map[string]any{"listen": "127.0.0.1:0", "websocket": map[string]any{"listen": "127.0.0.1:0"},
			"users": []map[string]any{{"user": "ws-agent", "password": string(hash), "role": "agent", "servers": []string{server}}}},
	})
	front := apacheFront(t, f)
	url := "ws://" + front + "/nats"
	if ok, err := wsLogin(url, "127.0.0.1", nil, "ws-agent", "ws-agent-secret"); !ok {
		t.Fatalf("the right password through Apache before any guess: %v", err)
	}
	var tries, in atomic.Int64
	defer guess(40, func(n int) {
		var hdr http.Header
		if n%2 == 1 {
			hdr = http.Header{"X-Forwarded-For": []string{"127.0.0.1"}} // the real agent's address
		}
		tries.Add(1)
		if ok, _ := wsLogin(url, "127.0.0.2", hdr, "ws-agent", "guess-"+strconv.Itoa(n)); ok {
			in.Add(1)
		}
	})()
	// The guess runs until it has failed enough to lock anything it can.
	testutil.WaitFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := tries.Load(); n < 120 {
			return fmt.Errorf("%d guesses so far", n)
		}
		return nil
	})
	begin := time.Now()
	f.startAgent(t, server, "-nats", url, "-user", "ws-agent", "-password", "ws-agent-secret")
	took := f.waitState(t, server, 5*time.Second, "up", "full")
	t.Logf("the real agent in %v after %d guesses through Apache (%v since its start)", took, tries.Load(), time.Since(begin).Round(time.Millisecond))
	if in.Load() != 0 {
		t.Errorf("%d guesses got in", in.Load())
	}
	if s := f.servers(t)[server]; s.Source != "agent" {
		t.Errorf("source %q, want agent", s.Source)
	}
}

// TestAdminGuessedFromManyAddresses: 50 guesses a second of the admin's
// password (a bcrypt hash) from 2,000 addresses, as Apache forwards them,
// on a coordinator started just before: the real admin, from an address
// it never used, is in at least 8 of its 10 tries, all while the guess's
// addresses still try for the first time (it got in 0 of 60).
func TestAdminGuessedFromManyAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s distributed guess")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("admin-secret"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	f := startFarm(t, map[string]any{
		"simulationServers": []string{"127.0.0.1/2612"},
		"nats": map[string]any{"listen": "127.0.0.1:0", "users": []map[string]any{
			{"user": "admin", "password": string(hash), "role": "admin"}}},
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}, Timeout: 30 * time.Second}
	try := func(addr, password string) (int, error) {
		req, _ := http.NewRequest("GET", f.base+"/monitor?admin", nil)
		req.SetBasicAuth("admin", password)
		req.Header.Set("X-Forwarded-For", addr)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var guesses, guessedIn atomic.Int64
	defer guess(50, func(n int) {
		guesses.Add(1)
		if code, _ := try(fmt.Sprintf("198.18.%d.%d", n%2000/250, n%250+1), "guess-"+strconv.Itoa(n)); code == http.StatusOK {
			guessedIn.Add(1)
		}
	})()
	in := 0
	for i := range 10 {
		// The admin's own pace: a try every 2 s, the guess's 100 between.
		testutil.WaitFor(t, 30*time.Second, 10*time.Millisecond, func() error {
			if n := guesses.Load(); n < int64(100*(i+1)) {
				return fmt.Errorf("%d guesses so far", n)
			}
			return nil
		})
		code, err := try("192.0.2.1", "admin-secret")
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusOK {
			in++
		}
	}
	n := guesses.Load()
	t.Logf("the real admin in %d of 10 tries during %d guesses from %d addresses", in, n, min(n, 2000))
	if n > 2000 {
		t.Logf("the guess's addresses had all tried once: the first pass was over")
	}
	if in < 8 {
		t.Errorf("the real admin got in %d of 10 times under the guess", in)
	}
	if guessedIn.Load() != 0 {
		t.Errorf("%d guesses got in", guessedIn.Load())
	}
}

// TestForgedRequestInfoPlacesFew: a monitor's 300 requests on
// simgate.api.session, each with a Nats-Request-Info of another user
// hidden after a bare LF, place at most 40 (they placed 300 of 300,
// bypassing the rate limit and the per-visitor bookings).
func TestForgedRequestInfoPlacesFew(t *testing.T) {
	const server = "127.0.0.1/2613"
	f := startFarm(t, map[string]any{
		"simulationServers": []string{server},
		"nats": map[string]any{"listen": "127.0.0.1:0", "users": []map[string]any{
			{"user": "sim", "password": "sim-secret", "role": "agent", "servers": []string{server}},
			{"user": "ops", "password": "ops-secret", "role": "monitor"}}},
	})
	f.startAgent(t, server, "-user", "sim", "-password", "sim-secret")
	f.waitState(t, server, 10*time.Second, "up")
	raw := testutil.DialRawNATS(t, strings.TrimPrefix(f.nats, "nats://"), "ops", "ops-secret")
	placed := 0
	var first string
	for n := range 300 {
		reply := raw.Request("simgate.api.session", fmt.Sprintf("X-Test: 1\nNats-Request-Info: {\"acc\":\"APP\",\"user\":\"forged-%d\"}\r\n", n),
			"https://github.com/cyberbotics/webots/blob/R2025a/projects/robots/gctronic/e-puck/worlds/e-puck.wbt")
		if first == "" {
			first = reply
		}
		if strings.Contains(reply, "ws://127.0.0.1/2613") {
			placed++
		}
	}
	t.Logf("300 forged requests placed %d; the first answered %q", placed, first)
	// The same monitor's own request, as the server wrote it, is placed.
	if reply := raw.Request("simgate.api.session", "X-Test: 1\r\n", "https://github.com/x/y/blob/main/worlds/w.wbt"); !strings.Contains(reply, "ws://127.0.0.1/2613") {
		t.Errorf("the monitor's own request: %q, want a session on 127.0.0.1/2613", reply)
	}
	if placed > 40 {
		t.Errorf("300 forged requests from one monitor placed %d, want at most 40", placed)
	}
}

// TestEphemeralConsumersSwept: a monitor makes 1,000 ephemeral pull
// consumers allowed an hour of idleness on the farm bucket; a new watch
// then works (it failed: "maximum consumers limit reached").
func TestEphemeralConsumersSwept(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 consumers")
	}
	const server = "127.0.0.1/2614"
	f := startFarm(t, map[string]any{
		"simulationServers": []string{server},
		"nats": map[string]any{"listen": "127.0.0.1:0", "users": []map[string]any{
			{"user": "ops", "password": "ops-secret", "role": "monitor"}}},
	})
	nc, err := nats.Connect(f.nats, nats.UserInfo("ops", "ops-secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stream jetstream.Stream
	testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		stream, err = js.Stream(ctx, "KV_simgate-servers")
		return err
	})
	made := 0
	var refused error
	for range 1000 {
		if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{InactiveThreshold: time.Hour}); err != nil {
			refused = err
			break
		}
		made++
	}
	t.Logf("made %d ephemeral consumers (stopped by: %v)", made, refused)
	if made < 100 {
		t.Fatalf("only %d consumers made: %v", made, refused)
	}
	kv, err := js.KeyValue(ctx, "simgate-servers")
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	failures := map[string]int{}
	// Within seconds: the leader looks at each consumer as it is made (the
	// 10 s sweep alone left every watch out for up to 10 s).
	testutil.WaitFor(t, 5*time.Second, 100*time.Millisecond, func() error {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			failures[err.Error()]++
			return err
		}
		defer func() { _ = w.Stop() }()
		select {
		case <-w.Updates():
			return nil
		case <-time.After(2 * time.Second):
			return fmt.Errorf("the watch said nothing")
		}
	})
	t.Logf("a watch works %v after the consumers were made (before: %v)", time.Since(begin).Round(time.Millisecond), failures)
	// The rest go too: none is left to fill the limit again.
	testutil.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Consumers > 10 {
			return fmt.Errorf("%d consumers left on the farm bucket", info.State.Consumers)
		}
		return nil
	})
}

// TestSilentConnectionsBehindApache: 600 connections that send nothing,
// from one address and then from 600, and a visitor, direct and through
// Apache, is placed within 1 s (direct: 4 of 174 placed; through Apache:
// 326 of 347 answered 502).
func TestSilentConnectionsBehindApache(t *testing.T) {
	const server = "127.0.0.1/2615"
	f := startFarm(t, map[string]any{"simulationServers": []string{server}})
	f.startAgent(t, server)
	f.waitState(t, server, 10*time.Second, "up")
	front := apacheFront(t, f)
	host := strings.TrimPrefix(f.base, "http://")
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	visit := func(base, visitor string) {
		t.Helper()
		begin := time.Now()
		req, _ := http.NewRequest("GET", base+"/session", nil)
		if visitor != "" {
			req.Header.Set("X-Forwarded-For", visitor)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("a visitor through %s: %v", base, err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "ws://127.0.0.1/2615") {
			t.Errorf("a visitor through %s: %d %q", base, resp.StatusCode, body)
		}
		t.Logf("a visitor through %s placed in %v", base, time.Since(begin).Round(time.Microsecond))
	}
	for _, spread := range []bool{false, true} {
		var silent []net.Conn
		for i := range 600 {
			from := "127.0.0.7"
			if spread {
				from = fmt.Sprintf("127.3.%d.%d", i/250, i%250+1)
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
			c, err := d.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			silent = append(silent, c)
		}
		visit(f.base, "203.0.113.1")
		visit("http://"+front, "")
		for _, c := range silent {
			c.Close()
		}
	}
}

// TestAgentUnderABrokenGPUDriver: the real agent on a machine whose NVIDIA
// driver is broken (a stand-in libnvidia-ml.so.1): an nvmlInit that never
// returns, and an absurd device count. Heartbeats come within two
// intervals, without the GPU (detection runs beside them), and SIGTERM
// stops the agent (a hung init kept it from ever beating and from
// stopping; the count ran it out of memory).
func TestAgentUnderABrokenGPUDriver(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build the NVML stand-in")
	}
	lib := t.TempDir()
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(lib, "libnvidia-ml.so.1"),
		"../internal/agent/testdata/fakenvml.c").CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	const server = "127.0.0.1/2616"
	f := startFarm(t, map[string]any{"simulationServers": []string{server}})
	nc, err := nats.Connect(f.nats)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, driver := range []string{"FAKE_NVML_INIT=hang", "FAKE_NVML_COUNT=4000000000"} {
		t.Run(driver, func(t *testing.T) {
			beats := make(chan []byte, 16)
			sub, err := nc.Subscribe("simgate.load."+node(server), func(m *nats.Msg) {
				select {
				case beats <- m.Data:
				default:
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			a := startEnv(t, "", []string{"HOST_PROC=" + quietProc(t), "LD_LIBRARY_PATH=" + lib, driver}, f.agent,
				"-nats", f.nats, "-server", server, "-interval", "1s", "-probe", "off", "-simulation-config", "off")
			var first []byte
			select {
			case first = <-beats:
			case <-time.After(2 * time.Second):
				t.Fatalf("no heartbeat within two intervals (2 s):\n%s", a.out.String())
			}
			t.Logf("the first heartbeat %v after the agent's start: %s", time.Since(begin).Round(time.Millisecond), first)
			if strings.Contains(string(first), `"gpu"`) {
				t.Errorf("a broken driver's GPU was reported: %s", first)
			}
			if driver == "FAKE_NVML_INIT=hang" {
				// The driver's silence is said once, and the beats go on.
				testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
					if !strings.Contains(a.out.String(), "does not answer") {
						return errString("the agent did not say the GPU's driver does not answer")
					}
					return nil
				})
				for len(beats) > 0 {
					<-beats // those before
				}
				select {
				case <-beats:
				case <-time.After(10 * time.Second):
					t.Fatalf("no heartbeat after the driver was given up:\n%s", a.out.String())
				}
			}
			code, took := a.stop(t, syscall.SIGTERM, 10*time.Second)
			t.Logf("SIGTERM: exit %d in %v", code, took.Round(time.Millisecond))
			if code != 0 {
				t.Errorf("SIGTERM: exit %d, want 0:\n%s", code, a.out.String())
			}
		})
	}
}
