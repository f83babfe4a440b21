package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// simulationStub is a simulation server of the original kind: it answers
// its load on /load and has no agent.
func simulationStub(t *testing.T, load string) (entry string, body *atomic.Value) {
	t.Helper()
	body = &atomic.Value{}
	body.Store(load)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/load" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, body.Load().(string))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), body
}

// TestMigrationWithoutAgents is a site's first day: the seed's session.json
// (its servers replaced by stubs answering /load, ssl off as they speak
// HTTP), no agent anywhere. Sessions are placed as the original placed
// them; an agent installed later takes its server over, and when that agent
// dies the server is down at once, then polled again.
func TestMigrationWithoutAgents(t *testing.T) {
	low, _ := simulationStub(t, "30.5")
	high, highLoad := simulationStub(t, "60")
	var cfg map[string]any
	seed, err := os.ReadFile(filepath.Join("testdata", "seed-session.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(seed, &cfg); err != nil {
		t.Fatal(err)
	}
	delete(cfg, "administrator") // no mail server in this test
	cfg["simulationServers"], cfg["ssl"], cfg["debug"] = []string{low, high}, false, true
	cfg["nats"] = map[string]any{"listen": "127.0.0.1:0"}
	cfg["port"] = 0
	data, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "session.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFarm(t, path, t.TempDir())
	f.launch(t)

	f.waitState(t, low, 10*time.Second, "up")
	f.waitState(t, high, 10*time.Second, "up")
	servers := f.servers(t)
	if s := servers[low]; s.Load != 30.5 || s.Source != "poll" {
		t.Errorf("polled server: %+v", s)
	}
	expectText(t, f.base+"/session", "ws://"+low) // the least loaded, as the original chose
	expectText(t, f.base+"/load", "45.25")
	for _, s := range []string{low, high} {
		if n := strings.Count(f.coord.out.String(), "no agent: polling http://"+s+"/load"); n != 1 {
			t.Errorf("the log says %d times that %s is polled, want once", n, s)
		}
	}

	// An agent is installed beside the second server: its heartbeats win.
	highLoad.Store("99") // what a poll would say now; the agent's word counts
	agent := f.startAgent(t, high)
	testutil.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := f.servers(t)[high]; s.Source != "agent" {
			return fmt.Errorf("%s: source %q", high, s.Source)
		}
		return nil
	})
	// The agent dies: down at once, as for any agent; after its silence
	// timeout the server is polled again and back in service.
	_ = agent.cmd.Process.Kill()
	f.waitState(t, high, 2*time.Second, "down")
	highLoad.Store("20")
	f.waitState(t, high, 10*time.Second, "up")
	if s := f.servers(t)[high]; s.Source != "poll" || s.Load != 20 {
		t.Errorf("after its agent died: %+v, want polled at 20", s)
	}
}
