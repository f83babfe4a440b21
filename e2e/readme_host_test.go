package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeHost is a machine for the README's commands, run as written, as
// root: a folder holding its own /etc, /home, /usr/local/bin,
// /usr/lib/sysusers.d and /var/lib (copies of this machine's, or empty),
// bound over the real ones in a mount namespace for each run, and a
// network namespace of its own where netns is set. The commands write
// where they say, and nothing of the real machine changes.
//
// Two things stand in for what a test machine lacks: systemctl (no systemd
// runs here; testdata/readme/systemctl starts a unit's ExecStart with its
// User, environment and folders, as the unit says) and editor (the
// administrator's edits, set with edit).
type readmeHost struct {
	t     *testing.T
	name  string
	root  string
	src   string // the checkout the commands run from
	netns string // "" for this machine's network
	n     int    // commands written so far
}

// readmeTools skips the test where a tool the README's commands or the
// stand-ins use is missing, or namespaces cannot be made.
func readmeTools(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and installs simgate")
	}
	for _, tool := range append([]string{"unshare", "apache2ctl", "a2enmod", "systemd-sysusers", "setpriv", "jq", "curl"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs apache2, jq, curl, iproute2, python3 and systemd)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("the README's install runs as root")
	}
	if out, err := exec.Command("unshare", "--mount", "true").CombinedOutput(); err != nil {
		t.Skipf("no mount namespace for a temporary root: %v %s", err, out)
	}
}

// readmePortsFree skips the test when a port the README's setup uses
// (1999, 4222) is taken on this machine.
func readmePortsFree(t *testing.T) {
	t.Helper()
	for _, port := range []int{1999, 4222} {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Skipf("port %d, which the README's setup uses, is taken here: %v", port, err)
		}
		l.Close()
	}
}

// newReadmeHost prepares a host named name whose commands run from src.
func newReadmeHost(t *testing.T, name, src, netns string) *readmeHost {
	t.Helper()
	h := &readmeHost{t: t, name: name, root: t.TempDir(), src: src, netns: netns}
	for _, d := range []string{"home", "usr-local-bin", "var-lib", "logs", "pids", "apache/run", "apache/lock", "apache/log", "edits", "commands"} {
		if err := os.MkdirAll(filepath.Join(h.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The units' users (the agent's is dynamic) reach what is theirs
	// under the host's folder, as on a real machine: the test's temporary
	// folders are its own (mode 700) otherwise.
	for d := h.root; strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	h.copy(quietProc(t), "quiet-proc")
	h.copy("/etc", "etc")
	h.copy("/usr/lib/sysusers.d", "sysusers.d")
	if _, err := os.Stat("/var/lib/apache2"); err == nil {
		h.copy("/var/lib/apache2", "var-lib/apache2")
	}
	for _, shim := range []string{"systemctl", "editor"} {
		data, err := os.ReadFile(filepath.Join("testdata", "readme", shim))
		if err != nil {
			t.Fatal(err)
		}
		h.write("shims/"+shim, strings.ReplaceAll(string(data), "@ROOT@", h.root), 0o755)
	}
	t.Cleanup(h.stop)
	return h
}

func (h *readmeHost) copy(src, dst string) {
	h.t.Helper()
	if out, err := exec.Command("cp", "-a", src, filepath.Join(h.root, dst)).CombinedOutput(); err != nil {
		h.t.Fatalf("cp %s: %v\n%s", src, err, out)
	}
}

// write puts a file at name under the host's folder (etc/…, home/…).
func (h *readmeHost) write(name, content string, mode os.FileMode) {
	h.t.Helper()
	path := filepath.Join(h.root, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		h.t.Fatal(err)
	}
}

// edit is what the administrator does when the README says to edit file:
// script runs with the file as $1.
func (h *readmeHost) edit(file, script string) {
	h.write("edits/"+filepath.Base(file), script, 0o644)
}

// apache arranges the site Apache serves before simgate, on addr
// (host:port) without TLS: ports.conf, the HTTPS site's VirtualHost
// (000-default-le-ssl.conf, enabled), and its run, lock and log folders in
// the host's folder.
func (h *readmeHost) apache(addr string) {
	h.t.Helper()
	h.write("etc/apache2/ports.conf", "Listen "+addr+"\n", 0o644)
	h.write("etc/apache2/sites-available/000-default-le-ssl.conf",
		"<VirtualHost "+addr+">\n    ServerName localhost\n    DocumentRoot /var/www/html\n</VirtualHost>\n", 0o644)
	_ = os.Remove(filepath.Join(h.root, "etc/apache2/sites-enabled/000-default.conf"))
	if err := os.Symlink("../sites-available/000-default-le-ssl.conf", filepath.Join(h.root, "etc/apache2/sites-enabled/000-default-le-ssl.conf")); err != nil {
		h.t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(h.root, "etc/apache2/envvars"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "\n# The test's run, lock and log folders.\nexport APACHE_RUN_DIR=%[1]s/apache/run APACHE_PID_FILE=%[1]s/apache/run/apache2.pid APACHE_LOCK_DIR=%[1]s/apache/lock APACHE_LOG_DIR=%[1]s/apache/log\n", h.root)
}

// run runs cmds as written, in order, after prelude (shell lines of the
// test's own, run first in the same namespaces), each from a file of its
// own so that no command line but the command's holds its words (pkill -f
// reads command lines). It fails the test on a command's non-zero exit and
// returns each command's output.
func (h *readmeHost) run(prelude string, cmds ...string) map[string]string {
	h.t.Helper()
	var script strings.Builder
	fmt.Fprintf(&script, `set -u
for d in etc:/etc home:/home usr-local-bin:/usr/local/bin sysusers.d:/usr/lib/sysusers.d var-lib:/var/lib; do
  mount --bind "%[1]s/${d%%%%:*}" "${d#*:}" || exit 97
done
export PATH="%[1]s/shims:/usr/local/bin:$PATH"
cd "%[2]s"
%[3]s
run() { printf '\n$ %%s\n' "$(cat "$1")"; sh "$1" 2>&1; echo "[exit $?]"; }
`, h.root, h.src, prelude)
	for _, c := range cmds {
		h.n++
		name := fmt.Sprintf("commands/%03d.sh", h.n)
		h.write(name, c+"\n", 0o644)
		fmt.Fprintf(&script, "run %s/%s\n", h.root, name)
	}
	scriptFile := fmt.Sprintf("commands/%03d-run.sh", h.n)
	h.write(scriptFile, script.String(), 0o644)
	args := []string{"unshare", "--mount", "--propagation", "private", "sh", filepath.Join(h.root, scriptFile)}
	if h.netns != "" {
		args = append([]string{"ip", "netns", "exec", h.netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	// The agents the commands start measure a quiet machine from testdata
	// (gopsutil's HOST_PROC), not this one: CI runs beside other jobs, and
	// a busy machine made the README's server full (issue 32).
	cmd.Env = append(os.Environ(), "HOST_PROC="+filepath.Join(h.root, "quiet-proc"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		h.t.Fatalf("%s: the README's commands did not end in 5 minutes:\n%s", h.name, out)
	}
	h.t.Logf("on %s, as run:\n%s", h.name, out)
	if err != nil {
		h.t.Fatalf("%s: %v", h.name, err)
	}
	results := map[string]string{}
	for _, block := range strings.Split(string(out), "\n$ ")[1:] {
		c, rest, _ := strings.Cut(block, "\n")
		results[c] = rest
		// -check exits 1 for a usable configuration with warnings (PROTOCOL §3).
		warned := strings.Contains(c, " -check ") && strings.Contains(rest, "configuration usable") && strings.Contains(rest, "[exit 1]")
		if !strings.Contains(rest, "[exit 0]") && !warned {
			h.t.Errorf("%s: %s failed:\n%s", h.name, c, rest)
		}
	}
	if len(results) != len(cmds) {
		h.t.Errorf("%s: %d of the %d commands ran", h.name, len(results), len(cmds))
	}
	return results
}

// curl runs curl with args in the host's network.
func (h *readmeHost) curl(args ...string) (string, error) {
	cmd := append([]string{"curl", "-s", "-m", "5"}, args...)
	if h.netns != "" {
		cmd = append([]string{"ip", "netns", "exec", h.netns}, cmd...)
	}
	out, err := exec.Command(cmd[0], cmd[1:]...).Output()
	return string(out), err
}

// log is what a unit the systemctl stand-in started has written: its
// standard error, and for the coordinator its log file too.
func (h *readmeHost) log(unit string) string {
	data, _ := os.ReadFile(filepath.Join(h.root, "logs", unit+".log"))
	file, _ := os.ReadFile(filepath.Join(h.root, "var-lib", "simgate", "log", "session", "output.log"))
	return string(data) + string(file)
}

// stop stops what the host's commands started: the units the systemctl
// stand-in started, Apache, and any other process the test recorded.
func (h *readmeHost) stop() {
	if h.t.Failed() {
		logs, _ := filepath.Glob(filepath.Join(h.root, "logs", "*.log"))
		more, _ := filepath.Glob(filepath.Join(h.root, "var-lib", "simgate", "log", "session", "*.log"))
		for _, l := range append(logs, more...) {
			data, _ := os.ReadFile(l)
			h.t.Logf("%s: %s:\n%s", h.name, strings.TrimPrefix(l, h.root), data)
		}
	}
	units, _ := filepath.Glob(filepath.Join(h.root, "pids", "*"))
	for _, p := range append(units, filepath.Join(h.root, "apache", "run", "apache2.pid")) {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 1 {
			continue
		}
		// A unit runs under setsid: its process group is everything it
		// started, a reload's new process included (it outlives the first).
		group := slices.Contains(units, p)
		running := func() bool { return alive(pid) }
		if group {
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			running = func() bool { return groupAlive(pid) }
		} else {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		deadline := time.Now().Add(15 * time.Second)
		for running() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // polling another process's exit: no event to wait on
		}
		if running() {
			h.t.Logf("%s: %s (pid %d) did not stop in 15 s: killed", h.name, filepath.Base(p), pid)
			if group {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			} else {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// groupAlive says whether a process of process group pgid runs (zombies
// do not count).
func groupAlive(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		data, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(data), ") ")
		f := strings.Fields(rest)
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
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

// copyRepo copies the repository's files (tracked, and untracked ones git
// does not ignore) to dst: the README's commands run from a checkout.
func copyRepo(t *testing.T, dst string) {
	t.Helper()
	list, err := exec.Command("git", "-C", "..", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Skipf("the repository's files are listed by git: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		info, err := os.Stat(filepath.Join("..", f))
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// seedConfig is the seed's session.json (deploy/session.json.example), for
// a test to turn into a site's.
func seedConfig(t *testing.T) map[string]any {
	t.Helper()
	var site map[string]any
	seed, err := os.ReadFile("../deploy/session.json.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(seed, &site); err != nil {
		t.Fatal(err)
	}
	return site
}
