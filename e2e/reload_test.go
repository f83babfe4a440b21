package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/simgate/simgate/internal/testutil"
)

// TestReloadKeepsRelayedSessions: issue 29. A reload (SIGHUP: the unit's
// ExecReload, the hand-over a new binary gets) with 20 sessions relayed by
// the waiting room ends none of them, and new visitors are served
// throughout; the old process exits once its last relayed session ends.
func TestReloadKeepsRelayedSessions(t *testing.T) {
	sim := newSimStub(t)
	natsPort := testutil.ClusterPorts(t, 1)[0]
	f := startFarm(t, map[string]any{"simulationServers": []string{sim.entry},
		"nats": map[string]any{"listen": "127.0.0.1:" + strconv.Itoa(natsPort)}})
	var full atomic.Bool
	full.Store(true)
	stop := make(chan struct{})
	var beats sync.WaitGroup
	beats.Add(1)
	go func() { // the server's agent: 1 % a session, or full
		defer beats.Done()
		p := f.publisher(t, "reload-test")
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			n, load := sim.sessions(), float64(sim.sessions())
			if full.Load() {
				load = 99
			}
			_ = p.nc.Publish("simgate.load."+node(sim.entry), []byte(fmt.Sprintf(
				`{"v":1,"server":%q,"status":"up","load":%g,"sessions":%d,"maxSessions":100,"interval":0.2}`, sim.entry, load, n)))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); beats.Wait() })
	f.waitState(t, sim.entry, 5*time.Second, "full")

	// 20 visitors wait, then are seated through the waiting room: relayed.
	var vs []*visitor
	for i := range 20 {
		v, answer := visit(t, f, fmt.Sprintf("198.51.100.%d", 100+i), "")
		if v == nil || !strings.Contains(answer, "/wait/") {
			t.Fatalf("visitor %d: %q", i, answer)
		}
		v.expect("queue: ", 2*time.Second)
		vs = append(vs, v)
	}
	full.Store(false)
	for i, v := range vs {
		if l := v.expect("webots:", 10*time.Second); !strings.HasPrefix(l, "webots:ws://") {
			t.Fatalf("visitor %d: %q", i, l)
		}
	}

	// New visitors all along.
	var served, refused atomic.Int64
	var lastRefusal atomic.Value
	hammer := make(chan struct{})
	var stopHammer sync.Once
	t.Cleanup(func() { stopHammer.Do(func() { close(hammer) }) })
	var hammering sync.WaitGroup
	hammering.Add(1)
	go func() {
		defer hammering.Done()
		client := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-hammer:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, f.base+"/session", nil)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i%250+1))
			resp, err := client.Do(req)
			if err != nil {
				refused.Add(1)
				lastRefusal.Store(err.Error())
				continue
			}
			var b [256]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if body := string(b[:n]); resp.StatusCode != 200 || strings.HasPrefix(body, "Error:") {
				refused.Add(1)
				lastRefusal.Store(fmt.Sprintf("%d %s", resp.StatusCode, body))
				continue
			}
			served.Add(1)
			time.Sleep(20 * time.Millisecond) // a visitor's pace, not a wait
		}
	}()

	old := f.coord.cmd.Process.Pid
	if err := f.coord.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(f.coord.out.String(), "handed over to the new process") {
			return fmt.Errorf("the old process has not handed over")
		}
		return nil
	})
	child := childOf(t, old)
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	f.waitReady(t)
	// New visitors on the new process too.
	after := served.Load()
	testutil.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := served.Load() - after; n < 10 {
			return fmt.Errorf("%d visitors served by the new process", n)
		}
		return nil
	})
	stopHammer.Do(func() { close(hammer) })
	hammering.Wait()
	t.Logf("during the reload: %d new visitors served, %d refused", served.Load(), refused.Load())
	if refused.Load() > 0 {
		t.Errorf("%d new visitors refused during the reload (last: %v)", refused.Load(), lastRefusal.Load())
	}
	// Every relayed session still runs, both ways.
	for i, v := range vs {
		msg := "still-there-" + strconv.Itoa(i)
		if err := v.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("visitor %d's relayed session ended: %v", i, err)
		}
		if l := v.expect("echo: ", 3*time.Second); l != "echo: "+msg {
			t.Errorf("visitor %d: %q", i, l)
		}
	}
	if n := sim.sessions(); n != 20 {
		t.Errorf("%d sessions on the simulation server after the reload, want 20", n)
	}
	// The sessions end: the old process goes.
	for _, v := range vs {
		v.c.Close()
	}
	testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if running(old) {
			return fmt.Errorf("the old process %d still runs with no session left", old)
		}
		return nil
	})
}

// childOf is the process pid started (the new coordinator).
func childOf(t *testing.T, pid int) int {
	t.Helper()
	// Any of its threads may have started it.
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		t.Fatal(err)
	}
	var f []string
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		f = append(f, strings.Fields(string(data))...)
	}
	if len(f) == 0 {
		t.Fatalf("process %d started no process", pid)
	}
	child, _ := strconv.Atoi(f[0])
	return child
}

// running reports whether pid runs (not exited, nor a zombie).
func running(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}
