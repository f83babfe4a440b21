package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

func TestBadConfigExits2NamingTheKey(t *testing.T) {
	coord, _ := testutil.Binaries(t)
	tests := []struct{ name, doc, key string }{
		{"port not a number", `{"port": "http"}`, `"port"`},
		{"unknown simgate key", `{"nats": {"lisen": "127.0.0.1:4222"}}`, `"nats.lisen"`},
		{"comment", "{\n// farm\n}", `JSON has no comments`},
		{"port out of range", `{"port": 65536}`, `"port"`},
		{"nested key", `{"nats": {"listen": "0.0.0.0:4222"}}`, `"nats.listen"`},
		{"unreadable JSON", `{"port": 1999,}`, `line 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "session.json")
			if err := os.WriteFile(path, []byte(tt.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(coord, path).CombinedOutput()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != 2 || !strings.Contains(string(out), tt.key) {
				t.Errorf("exit %d, output %q; want exit 2 naming %s", code, out, tt.key)
			}
		})
	}
	out, err := exec.Command(coord, "a.json", "b.json").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("two arguments: %v %s", err, out)
	}
}

// TestOriginalFilesStart: every file the original starts with starts the
// coordinator, each odd key named on standard error, and -check is strict.
func TestOriginalFilesStart(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "internal", "config", "testdata", "original", "*.json"))
	if len(files) == 0 {
		t.Fatal("no files in internal/config/testdata/original")
	}
	coord, _ := testutil.Binaries(t)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			file, _ := filepath.Abs(file)
			out, err := exec.Command(coord, "-check", file).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			warned := strings.Contains(string(out), "warning:")
			if code == 2 || warned != (code == 1) {
				t.Fatalf("-check: exit %d, output:\n%s", code, out)
			}
			f := newFarm(t, file, t.TempDir())
			f.launch(t, "-port", "0", "-nats-listen", "127.0.0.1:0")
			if warned && !strings.Contains(f.coord.out.String(), "warning:") {
				t.Errorf("no warning on standard error:\n%s", f.coord.out.String())
			}
			if code, _ := f.coord.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
				t.Errorf("exit status %d", code)
			}
		})
	}
}

// TestSeedConfigStarts runs the seed's session.json unchanged (it logs to
// log/session/ under the working directory); only its ports are replaced,
// by flags, with free ones. The seed names real hosts (a simulation server
// to poll, a mail server the start tries): the coordinator runs in a
// network namespace of its own, with only its loopback, so that nothing
// leaves this machine; the test asks it from inside (nsenter, curl).
func TestSeedConfigStarts(t *testing.T) {
	for _, tool := range []string{"unshare", "nsenter", "ip", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the seed's real hosts must not be reached", tool)
		}
	}
	if out, err := exec.Command("unshare", "--net", "true").CombinedOutput(); err != nil {
		t.Skipf("no network namespace to keep the seed's real hosts unreached: %v %s", err, out)
	}
	dir := t.TempDir()
	seed, err := os.ReadFile(filepath.Join("testdata", "seed-session.json"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "session.json")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	coord, _ := testutil.Binaries(t)
	lf := filepath.Join(dir, "listening.json")
	p := startIn(t, dir, "unshare", "--net", "sh", "-c", `ip link set lo up && exec "$0" "$@"`,
		coord, "-port", "0", "-nats-listen", "127.0.0.1:0", "-listen-file", lf, path)
	var l listening
	testutil.WaitFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if p.exited() {
			t.Fatalf("the coordinator exited (%v):\n%s", p.err, p.out.String())
		}
		data, err := os.ReadFile(lf)
		if err != nil {
			return err
		}
		return json.Unmarshal(data, &l)
	})
	inside := func(path string) string {
		out, err := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", p.cmd.Process.Pid),
			"curl", "-s", fmt.Sprintf("http://127.0.0.1:%d%s", l.HTTPPort, path)).Output()
		if err != nil {
			t.Fatalf("curl %s inside the coordinator's namespace: %v", path, err)
		}
		return string(out)
	}
	if got := inside("/session"); got != noServer { // its one server has no agent yet
		t.Errorf("/session = %q, want %q", got, noServer)
	}
	var doc struct{ Servers []apiServer }
	if err := json.Unmarshal([]byte(inside("/api/servers")), &doc); err != nil || len(doc.Servers) != 1 ||
		doc.Servers[0].Server != "cyberbotics1.epfl.ch/2000" || doc.Servers[0].State != "unknown" {
		t.Errorf("seed server: %+v %v", doc.Servers, err)
	}
	if code, _ := p.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Errorf("exit status %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "log", "session", "output.log")); err != nil {
		t.Errorf("log file: %v", err)
	}
}

// TestConfigFreeStart is the README's run command as a new user runs it
// (no file), on free ports: the in-process agent reports this machine, and
// /session answers its ws:// URL, or the no-server sentence while this
// machine is really at or above the threshold (a busy test machine).
func TestConfigFreeStart(t *testing.T) {
	coord, _ := testutil.Binaries(t)
	lf := filepath.Join(t.TempDir(), "listening.json")
	begin := time.Now()
	p := startIn(t, t.TempDir(), coord, "-port", "0", "-nats-listen", "127.0.0.1:0", "-listen-file", lf)
	f := &farm{coord: p}
	testutil.WaitFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if p.exited() {
			t.Fatalf("the coordinator exited (%v):\n%s", p.err, p.out.String())
		}
		var l listening
		data, err := os.ReadFile(lf)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &l); err != nil {
			return err
		}
		f.base = fmt.Sprintf("http://127.0.0.1:%d", l.HTTPPort)
		return nil
	})
	state := f.waitState(t, "localhost:2000", 20*time.Second, "up", "full")
	_, body, err := get(f.base + "/session")
	if err != nil {
		t.Fatal(err)
	}
	if s := f.servers(t)["localhost:2000"]; body != "ws://localhost:2000" && !(s.State == "full" && body == noServer) {
		t.Errorf("/session = %q with localhost:2000 %s (%s)", body, s.State, s.Reason)
	}
	t.Logf("config-free coordinator: localhost:2000 reported after %v (%v after the coordinator served); /session = %q",
		time.Since(begin), state, body)
	if code, _ := p.stop(t, syscall.SIGINT, 10*time.Second); code != 0 {
		t.Errorf("exit status %d", code)
	}
}

// TestBusyPortsFailAtOnce: a port in use stops the start at once, with
// exit 1 and a message naming the port and the cause.
func TestBusyPortsFailAtOnce(t *testing.T) {
	coord, _ := testutil.Binaries(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	for _, args := range [][]string{
		{"-port", port, "-nats-listen", "127.0.0.1:0"},
		{"-port", "0", "-nats-listen", "127.0.0.1:" + port},
	} {
		begin := time.Now()
		out, err := exec.Command(coord, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), port) || !strings.Contains(string(out), "address already in use") {
			t.Errorf("coordinator %v: %v after %v, output:\n%s\nwant exit 1 naming port %s and the cause", args, err, time.Since(begin), out, port)
		}
		t.Logf("%v: refused after %v", args, time.Since(begin))
	}
}
