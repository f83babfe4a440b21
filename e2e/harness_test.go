// Package e2e runs the real coordinator and agent binaries against each
// other over real sockets and checks the contract (PROTOCOL.md) from outside.
package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

// proc is a running binary whose output is kept for failure reports.
type proc struct {
	cmd  *exec.Cmd
	out  *testutil.Buffer
	done chan struct{}
	err  error
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startIn(t, "", bin, args...)
}

// startIn starts bin in the working directory dir ("" for the test's own).
func startIn(t *testing.T, dir, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, dir, nil, bin, args...)
}

// startEnv starts bin in dir with env added to the test's environment.
func startEnv(t *testing.T, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &testutil.Buffer{}, done: make(chan struct{})}
	p.cmd.Dir = dir
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s %v:\n%s", filepath.Base(bin), args, p.out.String())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop signals the process and returns its exit code and how long it took.
func (p *proc) stop(t *testing.T, sig syscall.Signal, within time.Duration) (int, time.Duration) {
	t.Helper()
	begin := time.Now()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("process did not exit within %v after %v", within, sig)
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(begin)
}

// farm is a coordinator started from a configuration file.
type farm struct {
	base     string // http://127.0.0.1:port
	nats     string
	coord    *proc
	bin      string // coordinator binary
	agent    string // agent binary
	cfg      string
	dir      string // the coordinator's working directory ("" for the test's own)
	natsHost string // the host of nats.listen
	bound    listening
	notReady bool // launch returns once the coordinator serves, ready or not
}

// listening is what the coordinator's -listen-file holds.
type listening struct {
	HTTPPort         int    `json:"httpPort"`
	NATSURL          string `json:"natsURL"`
	NATSPort         int    `json:"natsPort"`
	NATSWebsocketURL string `json:"natsWebsocketURL"`
}

// startFarm writes a configuration with extra's keys over a plain local one
// and starts a coordinator on it. Every port is 0: the coordinator binds
// free ones and says which, so no test picks a port it does not hold.
func startFarm(t *testing.T, extra map[string]any) *farm {
	t.Helper()
	return startFarmWith(t, extra, false)
}

func startFarmWith(t *testing.T, extra map[string]any, notReady bool) *farm {
	t.Helper()
	// Each coordinator its own logDir: its state store lives there, and
	// one test's pending mails must not be another's.
	cfg := map[string]any{
		"port": 0, "ssl": false, "portRewrite": false, "debug": true, "logDir": t.TempDir(),
		"nats": map[string]any{"listen": "127.0.0.1:0"},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	data, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "session.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFarm(t, path, "")
	f.notReady = notReady
	if n, ok := cfg["nats"].(map[string]any); ok {
		if l, ok := n["listen"].(string); ok {
			f.natsHost, _, _ = strings.Cut(l, ":")
		}
	}
	f.launch(t)
	return f
}

// startFarmNotReady is startFarm that returns once the coordinator serves,
// ready or not.
func startFarmNotReady(t *testing.T, extra map[string]any) *farm {
	t.Helper()
	return startFarmWith(t, extra, true)
}

// newFarm is a farm for the configuration file at path, not started yet.
func newFarm(t *testing.T, path, dir string) *farm {
	t.Helper()
	coordBin, agentBin := testutil.Binaries(t)
	return &farm{bin: coordBin, agent: agentBin, cfg: path, dir: dir, natsHost: "127.0.0.1"}
}

// launch starts the coordinator with args before the file and waits until
// it serves; it fails at once, with the output, if the process exits first.
func (f *farm) launch(t *testing.T, args ...string) {
	t.Helper()
	lf := filepath.Join(t.TempDir(), "listening.json")
	args = append(append(args, "-listen-file", lf), f.cfg)
	f.coord = startIn(t, f.dir, f.bin, args...)
	testutil.WaitFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		if f.coord.exited() {
			t.Fatalf("the coordinator exited before serving (%v):\n%s", f.coord.err, f.coord.out.String())
		}
		data, err := os.ReadFile(lf)
		if err != nil {
			return err
		}
		return json.Unmarshal(data, &f.bound)
	})
	f.base = fmt.Sprintf("http://127.0.0.1:%d", f.bound.HTTPPort)
	scheme, _, _ := strings.Cut(f.bound.NATSURL, "://")
	f.nats = fmt.Sprintf("%s://127.0.0.1:%d", scheme, f.bound.NATSPort)
	if !f.notReady {
		f.waitReady(t)
	}
}

// restart starts a new coordinator, after the last one stopped, on the
// ports it held, as a supervisor restarts one.
func (f *farm) restart(t *testing.T) {
	t.Helper()
	f.launch(t, "-port", strconv.Itoa(f.bound.HTTPPort), "-nats-listen", net.JoinHostPort(f.natsHost, strconv.Itoa(f.bound.NATSPort)))
}

// waitHealthy waits until the coordinator serves (/healthz), ready or not.
func (f *farm) waitHealthy(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if f.coord.exited() {
			t.Fatalf("the coordinator exited (%v):\n%s", f.coord.err, f.coord.out.String())
		}
		_, _, err := get(f.base + "/healthz")
		return err
	})
}

// waitReady waits until the coordinator is ready (/readyz 200): its drains
// loaded, every server heard from or one silence timeout passed.
func (f *farm) waitReady(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if f.coord.exited() {
			t.Fatalf("the coordinator exited (%v):\n%s", f.coord.err, f.coord.out.String())
		}
		_, _, err := get(f.base + "/readyz")
		return err
	})
}

func (f *farm) startAgent(t *testing.T, server string, args ...string) *proc {
	t.Helper()
	// No simulation config unless a test names one (a later flag wins): a
	// developer's own ~/webots-server must not change the tests. The
	// machine it measures is a quiet one from testdata (gopsutil's
	// HOST_PROC): CI runs beside other jobs, and a busy machine would make
	// its server full.
	return startEnv(t, "", []string{"HOST_PROC=" + quietProc(t)}, f.agent, append([]string{"-nats", f.nats, "-server", server,
		"-interval", "200ms", "-probe", "off", "-simulation-config", "off"}, args...)...)
}

func get(url string) (*http.Response, string, error) {
	return getAs(url, "")
}

// getAs is get from a visitor behind the local Apache: the coordinator
// trusts 127.0.0.1's X-Forwarded-For (visitor "" sends none).
func getAs(url, visitor string) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	if visitor != "" {
		req.Header.Set("X-Forwarded-For", visitor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode >= 500 {
		return resp, string(body), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp, string(body), nil
}

type apiServer struct {
	Server      string   `json:"server"`
	State       string   `json:"state"`
	Load        float64  `json:"load"`
	Sessions    int      `json:"sessions"`
	MaxSessions int      `json:"maxSessions"`
	LastSeen    *string  `json:"lastSeen"`
	Reason      string   `json:"reason"`
	CPU         *float64 `json:"cpu"`
	Source      string   `json:"source"`
}

func (f *farm) servers(t *testing.T) map[string]apiServer {
	t.Helper()
	_, body, err := get(f.base + "/api/servers")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Servers []apiServer `json:"servers"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/api/servers: %v: %s", err, body)
	}
	out := map[string]apiServer{}
	for _, s := range doc.Servers {
		out[s.Server] = s
	}
	return out
}

func (f *farm) waitState(t *testing.T, server string, within time.Duration, states ...string) time.Duration {
	t.Helper()
	begin := time.Now()
	testutil.WaitFor(t, within, 5*time.Millisecond, func() error {
		s := f.servers(t)[server]
		for _, st := range states {
			if s.State == st {
				return nil
			}
		}
		return fmt.Errorf("%s is %q (%s), want %v", server, s.State, s.Reason, states)
	})
	return time.Since(begin)
}

// publisher speaks the heartbeat schema directly, as PROTOCOL.md allows anyone to.
type publisher struct {
	t  *testing.T
	nc *nats.Conn
}

func (f *farm) publisher(t *testing.T, name string) *publisher {
	t.Helper()
	nc, err := nats.Connect(f.nats, nats.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &publisher{t: t, nc: nc}
}

func (p *publisher) beat(server, status string, load float64) {
	p.t.Helper()
	p.send(server, status, load, 1)
}

// beatEvery sends one "up" heartbeat announcing the given interval in seconds.
func (p *publisher) beatEvery(server string, load, interval float64) {
	p.t.Helper()
	p.send(server, "up", load, interval)
	time.Sleep(time.Duration(interval * float64(time.Second))) // the publisher's own cadence, not a wait
}

func (p *publisher) send(server, status string, load, interval float64) {
	p.t.Helper()
	data := fmt.Sprintf(`{"v":1,"server":%q,"status":%q,"load":%g,"interval":%g,"maxSessions":100}`, server, status, load, interval)
	p.publish(server, []byte(data))
}

// publish sends data on server's load subject and waits until the server has it.
func (p *publisher) publish(server string, data []byte) {
	p.t.Helper()
	if err := p.nc.Publish("simgate.load."+node(server), data); err != nil {
		p.t.Fatal(err)
	}
	if err := p.nc.Flush(); err != nil {
		p.t.Fatal(err)
	}
}

// node is PROTOCOL.md §2's subject token, written out here as a client would.
func node(server string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, server)
}
