package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/testutil"
)

func TestAgentReconnectsAfterCoordinatorRestart(t *testing.T) {
	const server = "127.0.0.1:2201"
	f := startFarm(t, map[string]any{"simulationServers": []string{server}})
	f.startAgent(t, server)
	f.waitState(t, server, 5*time.Second, "up", "full")
	if code, _ := f.coord.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("coordinator exit %d", code)
	}
	f.restart(t)
	took := f.waitState(t, server, 2*time.Second, "up", "full")
	t.Logf("placeable again %v after the new coordinator was ready", took)
}

// heartbeats records the statuses an agent publishes.
type heartbeats struct {
	mu       sync.Mutex
	statuses []string
}

func (h *heartbeats) since(n int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.statuses[n:]...)
}

func (h *heartbeats) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.statuses)
}

func watch(t *testing.T, f *farm, subject string) *heartbeats {
	t.Helper()
	nc, err := nats.Connect(f.nats, nats.Name("watcher"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	h := &heartbeats{}
	_, err = nc.Subscribe(subject, func(m *nats.Msg) {
		var hb struct{ Status string }
		_ = json.Unmarshal(m.Data, &hb)
		h.mu.Lock()
		h.statuses = append(h.statuses, hb.Status)
		h.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return h
}

// waitStatus waits for status within the next n heartbeats after mark.
func (h *heartbeats) waitStatus(t *testing.T, mark, n int, status string) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		got := h.since(mark)
		for i, s := range got {
			if s == status {
				if i >= n {
					return fmt.Errorf("%s came in heartbeat %d after the change, want within %d: %v", status, i+1, n, got)
				}
				return nil
			}
		}
		return fmt.Errorf("no %s yet: %v", status, got)
	})
}

func TestAgentProbeAndDrain(t *testing.T) {
	const server = "127.0.0.1:2301"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	sim := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "0") })}
	go sim.Serve(ln)
	f := startFarm(t, map[string]any{"simulationServers": []string{server}})
	hbs := watch(t, f, "simgate.load.127_0_0_1_2301")
	agent := start(t, f.agent, "-nats", f.nats, "-server", server, "-interval", "200ms", "-probe", "http://"+addr+"/load")
	f.waitState(t, server, 5*time.Second, "up", "full")

	// The simulation server stops: service-down within 2 heartbeats, and down for placement.
	mark := hbs.count()
	_ = sim.Close()
	hbs.waitStatus(t, mark, 2, "service-down")
	f.waitState(t, server, time.Second, "down")

	// It comes back on the same address: up again.
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sim2 := &http.Server{Handler: sim.Handler}
	go sim2.Serve(ln2)
	defer sim2.Close()
	mark = hbs.count()
	hbs.waitStatus(t, mark, 2, "up")
	f.waitState(t, server, time.Second, "up", "full")

	// Drain on and off without restarting the agent.
	mark = hbs.count()
	_ = agent.cmd.Process.Signal(syscall.SIGUSR1)
	hbs.waitStatus(t, mark, 2, "draining")
	f.waitState(t, server, time.Second, "draining")
	mark = hbs.count()
	_ = agent.cmd.Process.Signal(syscall.SIGUSR2)
	hbs.waitStatus(t, mark, 2, "up")
	f.waitState(t, server, time.Second, "up", "full")
}

// TestAgentStopsQuietly: an agent stopped as its unit stops it (SIGTERM)
// says goodbye without a WARN, and the coordinator takes its server as
// leaving, with no WARN either (issue 32: a spurious WARN on a clean stop).
func TestAgentStopsQuietly(t *testing.T) {
	const server = "127.0.0.1:2941"
	f := startFarm(t, map[string]any{"simulationServers": []string{server}})
	a := startEnv(t, "", []string{"HOST_PROC=" + quietProc(t)}, f.agent, "-nats", f.nats, "-server", server,
		"-interval", "1s", "-probe", "off", "-simulation-config", "off")
	f.waitState(t, server, 10*time.Second, "up")
	before := strings.Count(f.coord.out.String(), "level=WARN")
	if code, _ := a.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Errorf("the agent exited %d", code)
	}
	f.waitState(t, server, 10*time.Second, "down")
	if out := a.out.String(); strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Errorf("the agent's clean stop logged a warning:\n%s", out)
	}
	if after := f.coord.out.String(); strings.Count(after, "level=WARN") != before {
		t.Errorf("the coordinator warned of a clean stop:\n%s", after)
	}
}
