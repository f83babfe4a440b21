package agentcmd

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestSimulationConfigDefault: without -simulation-config the agent takes
// the only file of ~/webots-server/config/simulation/ (webots-server's
// setup guide), none when there are several, and "off" turns it off.
func TestSimulationConfigDefault(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := filepath.Join(home, "webots-server", "config", "simulation")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) Options {
		t.Helper()
		o, err := Parse(append([]string{"-server", "a.test/2000"}, args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := parse(); o.SimConfig != "" {
		t.Errorf("no file: %q", o.SimConfig)
	}
	one := filepath.Join(dir, "cyberbotics1.json")
	if err := os.WriteFile(one, []byte(`{"port": 2000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if o := parse(); o.SimConfig != one {
		t.Errorf("one file: %q, want %q", o.SimConfig, one)
	}
	if o := parse("-simulation-config", "off"); o.SimConfig != "" {
		t.Errorf("off: %q", o.SimConfig)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if o := parse(); o.SimConfig != "" {
		t.Errorf("two files: %q, want none (which one is this server's?)", o.SimConfig)
	}
}
