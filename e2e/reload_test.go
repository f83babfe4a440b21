package e2e

import (
	"fmt"
	"net/http"
	"os"
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

	"github.com/simgate/simgate/internal/testutil"
)

// TestReloadKeepsRelayedSessions: issue 29. A reload (SIGHUP: the unit's
// ExecReload, the hand-over a new binary gets) with 20 sessions relayed by
// the waiting room ends none of them, and new visitors are served
// throughout; the old process exits once its last relayed session ends.
func TestReloadKeepsRelayedSessions(t *testing.T) {
	sim := newSimStub(t)
	natsPort := testutil.FixedPorts(t, 1)[0]
	f := startFarm(t, map[string]any{"simulationServers": []string{sim.entry},
		"nats": map[string]any{"listen": "127.0.0.1:" + strconv.Itoa(natsPort)}})
	var full atomic.Bool
	full.Store(true)
	beatSessions(t, f.publisher(t, "reload-test"), sim, &full)
	f.waitState(t, sim.entry, 5*time.Second, "full")

	vs := relayed(t, f, 20, &full)

	// New visitors all along.
	h := startHammer(t, f.base)
	old := f.coord.cmd.Process.Pid
	reload(t, f)
	f.waitReady(t)
	h.servedMore(t, 10) // by the new process too
	h.stop(t)
	// Every relayed session still runs, both ways.
	stillRelayed(t, vs)
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

// TestClusterReloadKeepsRelayedSessions: issue 29, a cluster member's
// rolling upgrade as the README does it (a reload): the sessions its
// waiting room relays go on, and visitors asking any member, the reloaded
// one included, are all answered meanwhile.
func TestClusterReloadKeepsRelayedSessions(t *testing.T) {
	sim := newSimStub(t)
	c := startCluster(t, 3, map[string]any{"simulationServers": []string{sim.entry}})
	var full atomic.Bool
	full.Store(true)
	beatSessions(t, c.members[0].publisher(t, "cluster-reload-test"), sim, &full)
	for _, m := range c.members {
		m.waitState(t, sim.entry, 5*time.Second, "full")
	}
	m := c.members[1]
	vs := relayed(t, m, 10, &full)
	h := startHammer(t, c.members[0].base, m.base, c.members[2].base)
	reload(t, m)
	m.waitReady(t)
	h.servedMore(t, 30)
	h.stop(t)
	stillRelayed(t, vs)
	if n := sim.sessions(); n != len(vs) {
		t.Errorf("%d sessions on the simulation server after the reload, want %d", n, len(vs))
	}
}

// beatSessions beats for sim as its agent would through p every 200 ms:
// 1 % a session, or full while full is set.
func beatSessions(t *testing.T, p *publisher, sim *simStub, full *atomic.Bool) {
	stop := make(chan struct{})
	var beats sync.WaitGroup
	beats.Add(1)
	go func() {
		defer beats.Done()
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
}

// relayed has n visitors wait in f's waiting room while the farm is full,
// then unsets full: they are seated, and relayed by f.
func relayed(t *testing.T, f *farm, n int, full *atomic.Bool) []*visitor {
	t.Helper()
	var vs []*visitor
	for i := range n {
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
	return vs
}

// stillRelayed checks that every one of vs still relays both ways.
func stillRelayed(t *testing.T, vs []*visitor) {
	t.Helper()
	for i, v := range vs {
		msg := "still-there-" + strconv.Itoa(i)
		if err := v.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("visitor %d's relayed session ended: %v", i, err)
		}
		if l := v.expect("echo: ", 3*time.Second); l != "echo: "+msg {
			t.Errorf("visitor %d: %q", i, l)
		}
	}
}

// reload reloads f's coordinator (SIGHUP, as the unit's ExecReload) and
// waits until the old process has handed over; the new one is killed at
// the test's end.
func reload(t *testing.T, f *farm) {
	t.Helper()
	old := f.coord.cmd.Process.Pid
	if err := f.coord.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The new process, while the old one lives (it exits at once without
	// relayed sessions).
	child := 0
	testutil.WaitFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if child = children(old); child == 0 {
			return fmt.Errorf("process %d started no process", old)
		}
		return nil
	})
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	testutil.WaitFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(f.coord.out.String(), "handed over to the new process") {
			return fmt.Errorf("the old process has not handed over")
		}
		return nil
	})
	f.coord = adopt(child, f.coord.out)
}

// adopt is the process pid, which this test did not start (a reload's new
// coordinator, writing to out): it ends when pid no longer runs.
func adopt(pid int, out *testutil.Buffer) *proc {
	p, _ := os.FindProcess(pid)
	a := &proc{cmd: &exec.Cmd{Process: p}, out: out, done: make(chan struct{})}
	go func() {
		t := time.NewTicker(50 * time.Millisecond) // not our child: no Wait
		defer t.Stop()
		for running(pid) {
			<-t.C
		}
		close(a.done)
	}()
	return a
}

// hammer is visitors asking /session all along, each from its own
// address, at a visitor's pace, and what they were answered.
type hammer struct {
	served, refused atomic.Int64
	slowest         atomic.Int64 // ns
	lastRefusal     atomic.Value
	done            chan struct{}
	once            sync.Once
	wg              sync.WaitGroup
}

// startHammer starts asking the coordinators at bases, in turn.
func startHammer(t *testing.T, bases ...string) *hammer {
	h := &hammer{done: make(chan struct{})}
	t.Cleanup(func() { h.once.Do(func() { close(h.done) }); h.wg.Wait() })
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		client := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-h.done:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, bases[i%len(bases)]+"/session", nil)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i%250+1))
			asked := time.Now()
			resp, err := client.Do(req)
			if d := int64(time.Since(asked)); d > h.slowest.Load() {
				h.slowest.Store(d)
			}
			if err != nil {
				h.refused.Add(1)
				h.lastRefusal.Store(fmt.Sprintf("%v (at %s, after %v)", err, asked.Format("15:04:05.000"), time.Since(asked).Round(time.Millisecond)))
				continue
			}
			var b [256]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if body := string(b[:n]); resp.StatusCode != 200 || strings.HasPrefix(body, "Error:") {
				h.refused.Add(1)
				h.lastRefusal.Store(fmt.Sprintf("%d %s", resp.StatusCode, body))
				continue
			}
			h.served.Add(1)
			time.Sleep(20 * time.Millisecond) // a visitor's pace, not a wait
		}
	}()
	return h
}

// servedMore waits until n more visitors than now have been served.
func (h *hammer) servedMore(t *testing.T, n int64) {
	t.Helper()
	after := h.served.Load()
	testutil.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := h.served.Load() - after; got < n {
			return fmt.Errorf("%d more visitors served", got)
		}
		return nil
	})
}

// stop stops the visitors and fails the test if any was refused.
func (h *hammer) stop(t *testing.T) {
	t.Helper()
	h.once.Do(func() { close(h.done) })
	h.wg.Wait()
	t.Logf("during the reload: %d new visitors served, %d refused; the slowest answer took %v",
		h.served.Load(), h.refused.Load(), time.Duration(h.slowest.Load()).Round(time.Millisecond))
	if h.refused.Load() > 0 {
		t.Errorf("%d new visitors refused during the reload (last: %v)", h.refused.Load(), h.lastRefusal.Load())
	}
}

// children is the first process pid started (the new coordinator), 0 for none.
func children(pid int) int {
	// Any of its threads may have started it.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		if f := strings.Fields(string(data)); len(f) > 0 {
			child, _ := strconv.Atoi(f[0])
			return child
		}
	}
	return 0
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
