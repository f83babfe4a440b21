package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/notify/smtptest"
	"github.com/simgate/simgate/internal/testutil"
)

// TestREADMESetup is a site's first day, run from the README as written:
// "Installing", its "Apache" subsection and "Migrating from the original",
// every command in order, as root on a machine where the original runs.
//
// The machine is this one, inside a mount namespace (unshare) where /etc,
// /home, /usr/local/bin, /usr/lib/sysusers.d and /var/lib are copies in a
// temporary folder: the commands write where they say, and nothing of the
// real machine changes. What a site already has is arranged first: the
// original's session.json under /home/cyberbotics (the seed's, its two
// servers on loopback stubs and its mail server the test's own), the
// original itself running and holding port 1999, and Apache serving an
// HTTPS site (here on a free loopback port, without TLS).
//
// Two things stand in for what a test machine lacks: systemctl (no systemd
// runs here; testdata/readme/systemctl starts a unit's ExecStart with its
// User, environment and folders, as the unit says) and editor (the
// administrator's edits, testdata/readme/edits). Afterwards, visitors go
// through that Apache to the coordinator, and the agent has taken its
// server over.
func TestREADMESetup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and installs simgate")
	}
	for _, tool := range []string{"unshare", "apache2ctl", "a2enmod", "systemd-sysusers", "setpriv", "jq", "curl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs apache2, jq and systemd)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("the README's install runs as root")
	}
	if out, err := exec.Command("unshare", "--mount", "true").CombinedOutput(); err != nil {
		t.Skipf("no mount namespace for the temporary root: %v %s", err, out)
	}
	for _, port := range []int{1999, 4222} {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Skipf("port %d, which the README's setup uses, is taken here: %v", port, err)
		}
		l.Close()
	}

	root := t.TempDir()
	mkdir := func(dirs ...string) {
		for _, d := range dirs {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	write := func(name, content string, mode os.FileMode) {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	cp := func(src, dst string) {
		if out, err := exec.Command("cp", "-a", src, filepath.Join(root, dst)).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", src, err, out)
		}
	}
	mkdir("usr-local-bin", "var-lib", "logs", "pids", "apache/run", "apache/lock", "apache/log", "home/cyberbotics/.config/autostart")
	cp("/etc", "etc")
	cp("/usr/lib/sysusers.d", "sysusers.d")
	if _, err := os.Stat("/var/lib/apache2"); err == nil {
		cp("/var/lib/apache2", "var-lib/apache2")
	}
	copyRepo(t, filepath.Join(root, "src"))

	// The site as it stands: two simulation servers, a mail server.
	load := func(v string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/load" {
				fmt.Fprint(w, v)
				return
			}
			http.NotFound(w, r)
		}))
		t.Cleanup(s.Close)
		return s
	}
	withAgent, polled := load("12.5"), load("40")
	agentServer, polledServer := strings.TrimPrefix(withAgent.URL, "http://"), strings.TrimPrefix(polled.URL, "http://")
	smtp := smtptest.Start(t, "127.0.0.1:0")
	_, mailPort, _ := net.SplitHostPort(smtp.Addr)
	var site map[string]any
	seed, err := os.ReadFile("../deploy/session.json.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(seed, &site); err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(mailPort)
	site["simulationServers"] = []string{agentServer, polledServer}
	site["ssl"] = false
	site["mailServer"], site["mailServerPort"] = "127.0.0.1", port
	site["mailSender"], site["mailSenderPassword"] = smtp.User, smtp.Password
	siteJSON, _ := json.MarshalIndent(site, "", "  ")
	write("home/cyberbotics/webots-server/config/session/session.json", string(siteJSON), 0o644)
	// The original, from its guide's autostart entry, holding port 1999.
	write("home/cyberbotics/webots-server/session_server.py", original, 0o755)
	write("home/cyberbotics/.config/autostart/session_server.desktop",
		"[Desktop Entry]\nName=session_server\nExec=python /home/cyberbotics/webots-server/session_server.py /home/cyberbotics/webots-server/config/session/session.json\nType=Application\n", 0o644)
	// Apache serving the site on a free loopback port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apache := l.Addr().String()
	l.Close()
	write("etc/apache2/ports.conf", "Listen "+apache+"\n", 0o644)
	write("etc/apache2/sites-available/000-default-le-ssl.conf",
		"<VirtualHost "+apache+">\n    ServerName localhost\n    DocumentRoot /var/www/html\n</VirtualHost>\n", 0o644)
	_ = os.Remove(filepath.Join(root, "etc/apache2/sites-enabled/000-default.conf"))
	if err := os.Symlink("../sites-available/000-default-le-ssl.conf", filepath.Join(root, "etc/apache2/sites-enabled/000-default-le-ssl.conf")); err != nil {
		t.Fatal(err)
	}
	envvars, err := os.OpenFile(filepath.Join(root, "etc/apache2/envvars"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(envvars, "\n# TestREADMESetup: the run, lock and log folders in its root.\nexport APACHE_RUN_DIR=%[1]s/apache/run APACHE_PID_FILE=%[1]s/apache/run/apache2.pid APACHE_LOCK_DIR=%[1]s/apache/lock APACHE_LOG_DIR=%[1]s/apache/log\n", root)
	envvars.Close()

	// The stand-ins, and the administrator's edits.
	for _, name := range []string{"systemctl", "editor"} {
		data, err := os.ReadFile(filepath.Join("testdata", "readme", name))
		if err != nil {
			t.Fatal(err)
		}
		write("shims/"+name, strings.ReplaceAll(string(data), "@ROOT@", root), 0o755)
	}
	write("edits/agent.env", "sed -i 's|^SIMGATE_SERVER=.*|SIMGATE_SERVER="+agentServer+"|' \"$1\"\n", 0o644)
	write("edits/000-default-le-ssl.conf", "sed -i 's|^</VirtualHost>|    Include /etc/apache2/simgate.conf\\n</VirtualHost>|' \"$1\"\n", 0o644)

	var cmds []string
	for _, section := range []string{"Installing", "### Apache", "Migrating from the original"} {
		cmds = append(cmds, readmeCommands(t, section)...)
	}
	if len(cmds) < 12 {
		t.Fatalf("only %d commands in the README's setup sections: %q", len(cmds), cmds)
	}
	var script strings.Builder
	fmt.Fprintf(&script, `set -u
for d in etc:/etc home:/home usr-local-bin:/usr/local/bin sysusers.d:/usr/lib/sysusers.d var-lib:/var/lib; do
  mount --bind "%[1]s/${d%%%%:*}" "${d#*:}" || exit 97
done
export PATH="%[1]s/shims:/usr/local/bin:$PATH"
cd "%[1]s/src"
python3 /home/cyberbotics/webots-server/session_server.py /home/cyberbotics/webots-server/config/session/session.json >/dev/null 2>&1 &
echo $! >"%[1]s/pids/original"
i=0
until curl -s -o /dev/null localhost:1999/ || [ $i -gt 200 ]; do i=$((i + 1)); sleep 0.05; done
run() { printf '\n$ %%s\n' "$(cat "$1")"; sh "$1" 2>&1; echo "[exit $?]"; }
`, root)
	// Each command from a file of its own, so that no command line but the
	// command's own holds its words (pkill -f reads command lines).
	for i, c := range cmds {
		name := fmt.Sprintf("commands/%02d.sh", i)
		write(name, c+"\n", 0o644)
		fmt.Fprintf(&script, "run %s/%s\n", root, name)
	}
	write("setup.sh", script.String(), 0o644)
	t.Cleanup(func() { stopUnits(t, root) })
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", filepath.Join(root, "setup.sh"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("the README's setup did not end in 5 minutes:\n%s", out)
	}
	t.Logf("the README's setup, as run:\n%s", out)
	if err != nil {
		t.Fatalf("setting up the root: %v", err)
	}

	// Every command succeeded, and said what the README says it says.
	results := map[string]string{}
	for _, block := range strings.Split(string(out), "\n$ ")[1:] {
		c, rest, _ := strings.Cut(block, "\n")
		results[c] = rest
		if !strings.Contains(rest, "[exit 0]") {
			t.Errorf("%s failed:\n%s", c, rest)
		}
	}
	if len(results) != len(cmds) {
		t.Errorf("%d of the %d commands ran", len(results), len(cmds))
	}
	for c, want := range map[string]string{
		"apache2ctl configtest":          "Syntax OK",
		"curl -s localhost:1999/session": "ws://",
		"curl -s localhost:1999/api/servers | jq -r '.servers[] | \"\\(.server) \\(.source) \\(.state)\"'": polledServer + " poll up",
	} {
		if r, ok := results[c]; !ok || !strings.Contains(r, want) {
			t.Errorf("%s: want %q in %q", c, want, r)
		}
	}

	// Visitors through Apache, as the Webots client asks; the agent's
	// first heartbeat (within a second of its start) took its server over.
	via := "http://" + apache
	testutil.WaitFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, body, err := get(via + "/api/servers")
		var doc struct{ Servers []apiServer }
		if err == nil {
			err = json.Unmarshal([]byte(body), &doc)
		}
		for _, s := range doc.Servers {
			if s.Server == agentServer && s.Source == "agent" && s.State == "up" {
				return nil
			}
		}
		return fmt.Errorf("the agent has not taken %s over: %v %s", agentServer, err, body)
	})
	testutil.WaitFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, body, err := get(via + "/session")
		if err != nil || (body != "ws://"+agentServer && body != "ws://"+polledServer) {
			return fmt.Errorf("/session through Apache: %q %v", body, err)
		}
		return nil
	})
	for path, want := range map[string]string{"/load": "", "/api/servers": `"source":"poll"`, "/monitor": "<html"} {
		resp, body, err := get(via + path)
		if err != nil || resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("%s through Apache: %v %v %.200q", path, err, resp, body)
		}
	}
	coordLog, _ := os.ReadFile(filepath.Join(root, "logs", "simgate-coordinator.log"))
	if strings.Contains(string(coordLog), "level=ERROR") {
		t.Errorf("the coordinator logged an ERROR on a site's first day:\n%s", coordLog)
	}
}

// original stands in for session_server.py: it holds port 1999 until the
// README's pkill stops it.
const original = `import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ws://the-original")
    def log_message(self, *a): pass
http.server.HTTPServer(("", 1999), H).serve_forever()
`

// copyRepo copies the repository's files (tracked, and untracked ones git
// does not ignore) to dst: the README's commands run from a checkout.
func copyRepo(t *testing.T, dst string) {
	t.Helper()
	list, err := exec.Command("git", "-C", "..", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("the repository's files are listed by git: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join("..", f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		info, _ := os.Stat(filepath.Join("..", f))
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// stopUnits stops what the README's setup started: the units the systemctl
// stand-in started, Apache, and the original if it still runs.
func stopUnits(t *testing.T, root string) {
	pids, _ := filepath.Glob(filepath.Join(root, "pids", "*"))
	pids = append(pids, filepath.Join(root, "apache", "run", "apache2.pid"))
	for _, p := range pids {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 1 {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(15 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // polling another process's exit: no event to wait on
		}
		if alive(pid) {
			t.Logf("%s (pid %d) did not stop in 15 s: killed", filepath.Base(p), pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// alive says whether process pid runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}
