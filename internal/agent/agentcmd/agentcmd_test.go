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

// TestNATSURLLists: -nats takes one URL or several for failover, all of one
// transport (NATS cannot fail over between TCP and WebSocket).
func TestNATSURLLists(t *testing.T) {
	for _, tc := range []struct {
		list string
		ok   bool
	}{
		{"nats://127.0.0.1:4222", true},
		{"nats://a:4222,nats://b:4222,tls://c:4222", true},
		{"nats://a:4222, nats://b:4222", true},
		{"wss://a/nats,wss://b/nats", true},
		{"nats://a:4222,wss://b/nats", false},
		{"nats://a:4222,http://b", false},
		{"nats://a:4222,", false},
	} {
		if err := CheckNATSURLs(tc.list); (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.list, err)
		}
	}
}
