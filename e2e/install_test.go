package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/simgate/simgate/internal/testutil"
)

// TestInstallScript runs deploy/install.sh, as the README's Install section
// does, into a temporary root: the user, folders, binaries, configuration,
// units and Apache rules land where the units expect them, and
// systemd-analyze verify finds nothing to say about the units.
func TestInstallScript(t *testing.T) {
	for _, tool := range []string{"systemd-analyze", "systemd-sysusers"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install systemd; .ci/run does it)", tool)
		}
	}
	coord, agent := testutil.Binaries(t)
	if filepath.Dir(coord) != filepath.Dir(agent) {
		t.Fatal("the binaries are not in one folder")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "deploy", "install.sh")
	root := t.TempDir()
	// webots-server's setup guide puts the simulation server's policy under
	// its user's home: the agent's unit must be able to read it.
	simCfg := filepath.Join(root, "home", "webots", "webots-server", "config", "simulation", "simulation.json")
	if err := os.MkdirAll(filepath.Dir(simCfg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(simCfg, []byte(`{"port": 2000, "docker": true, "shareIdleTime": 50}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"coordinator", "agent"} {
		cmd := exec.Command("sh", script, role, filepath.Dir(coord))
		cmd.Env = append(os.Environ(), "DESTDIR="+root)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("install.sh %s: %v\n%s", role, err, out)
		}
	}
	for _, f := range []string{
		"usr/local/bin/simgate-coordinator", "usr/local/bin/simgate-agent",
		"etc/simgate/session.json", "etc/simgate/agent.env", "etc/apache2/simgate.conf", "etc/apache2/simgate-ha.conf",
		"etc/systemd/system/simgate-coordinator.service", "etc/systemd/system/simgate-agent.service",
	} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if !strings.Contains(string(passwd), "simgate:") {
		t.Errorf("no simgate user in the root's /etc/passwd:\n%s", passwd)
	}
	// The installed example configuration starts the coordinator (exit 0, or 1 for warnings).
	if out, err := exec.Command(coord, "-check", filepath.Join(root, "etc", "simgate", "session.json")).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("coordinator -check on the installed configuration: %v\n%s", err, out)
		}
	}
	// systemd-analyze needs the system's own units (sysinit.target, …) in the root.
	if err := os.MkdirAll(filepath.Join(root, "usr", "lib", "systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("cp", "-r", "/lib/systemd/system", filepath.Join(root, "usr", "lib", "systemd")).Run(); err != nil {
		t.Fatalf("copying the system's units: %v", err)
	}
	// …and the commands the units run that the system brings (ExecReload's kill).
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("cp", "/bin/kill", filepath.Join(root, "bin", "kill")).Run(); err != nil {
		t.Fatalf("copying /bin/kill: %v", err)
	}
	dropin, err := os.ReadFile(filepath.Join(root, "etc", "systemd", "system", "simgate-agent.service.d", "simulation-config.conf"))
	if err != nil {
		t.Fatalf("the agent's unit was not let read the simulation server's configuration: %v", err)
	}
	for _, want := range []string{"BindReadOnlyPaths=/home/webots/webots-server/config/simulation/simulation.json:/run/simgate-agent/simulation.json",
		"Environment=SIMGATE_SIMULATION_CONFIG=/run/simgate-agent/simulation.json"} {
		if !strings.Contains(string(dropin), want) {
			t.Errorf("drop-in lacks %s:\n%s", want, dropin)
		}
	}
	if env, _ := os.ReadFile(filepath.Join(root, "etc", "simgate", "agent.env")); !strings.Contains(string(env), "SIMGATE_SIMULATION_CONFIG") {
		t.Error("agent.env does not name SIMGATE_SIMULATION_CONFIG")
	}
	for _, unit := range []string{"simgate-coordinator.service", "simgate-agent.service"} {
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root, unit).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// TestInstallFindsTheSimulationConfig: on a stock webots-server checkout
// (four configurations) install.sh takes the one the running
// simulation_server.py was started with, read from its command line (a
// relative path, from its working directory); without one running it
// lists the four and says how to name one (issue 32: it said "none
// found").
func TestInstallFindsTheSimulationConfig(t *testing.T) {
	_, agent := testutil.Binaries(t)
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "deploy", "install.sh")
	root := t.TempDir()
	home := "/home/cyberbotics/webots-server"
	for _, name := range []string{"cyberbotics1", "cyberbotics2", "local", "video"} {
		p := filepath.Join(root, home, "config", "simulation", name+".json")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(`{"port": 2000}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A /proc with one simulation_server.py, started from its checkout.
	proc := t.TempDir()
	pid := filepath.Join(proc, "4242")
	if err := os.MkdirAll(pid, 0o755); err != nil {
		t.Fatal(err)
	}
	cmdline := "python3\x00" + home + "/simulation_server.py\x00config/simulation/cyberbotics2.json\x00"
	if err := os.WriteFile(filepath.Join(pid, "cmdline"), []byte(cmdline), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(home, filepath.Join(pid, "cwd")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, proc string
		want       []string
		dropin     string // the configuration the unit is given, "" for none
	}{
		{"a running simulation server", proc, []string{"pid 4242", "cyberbotics2.json"}, home + "/config/simulation/cyberbotics2.json"},
		{"none running", t.TempDir(), []string{"several simulation server configurations", "cyberbotics1.json", "local.json", "video.json", "SIMULATION_CONFIG=FILE"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dropin := filepath.Join(root, "etc", "systemd", "system", "simgate-agent.service.d", "simulation-config.conf")
			_ = os.Remove(dropin)
			cmd := exec.Command("sh", script, "agent", filepath.Dir(agent))
			cmd.Env = append(os.Environ(), "DESTDIR="+root, "PROC="+tc.proc)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("install.sh agent: %v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("install.sh said %q, lacking %q", out, w)
				}
			}
			data, err := os.ReadFile(dropin)
			switch {
			case tc.dropin == "" && err == nil:
				t.Errorf("a configuration was chosen: %s", data)
			case tc.dropin != "" && !strings.Contains(string(data), "BindReadOnlyPaths="+tc.dropin+":"):
				t.Errorf("drop-in %q (%v), want %s", data, err, tc.dropin)
			}
		})
	}
}
