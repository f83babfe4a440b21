package agentcmd

import (
	"io"
	"os"
	"path/filepath"
	"strings"
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

// TestNkeyFromSystemdCredential: under the unit (a dynamic user, which
// cannot read a seed kept mode 600 in /etc/simgate), the seed systemd
// hands over as the credential agent.nk is the agent's nkey; -nkey or
// SIMGATE_NKEY still wins (issue 32: the agent restarted for ever).
func TestNkeyFromSystemdCredential(t *testing.T) {
	creds := t.TempDir()
	seed := filepath.Join(creds, "agent.nk")
	own := filepath.Join(t.TempDir(), "own.nk")
	for _, tc := range []struct {
		name, dir string
		write     bool
		args      []string
		want      string
	}{
		{"no credentials", "", false, nil, ""},
		{"a credentials directory without it", creds, false, nil, ""},
		{"the credential", creds, true, nil, seed},
		{"-nkey wins", creds, true, []string{"-nkey", own}, own},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CREDENTIALS_DIRECTORY", tc.dir)
			_ = os.Remove(seed)
			if tc.write {
				if err := os.WriteFile(seed, []byte("SU..."), 0o400); err != nil {
					t.Fatal(err)
				}
			}
			o, err := Parse(append([]string{"-server", "a.test/2000", "-simulation-config", "off"}, tc.args...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if o.NkeyFile != tc.want {
				t.Errorf("nkey %q, want %q", o.NkeyFile, tc.want)
			}
		})
	}
}

// TestServerHint: a refused heartbeat names the entry as given and its
// other spelling, which may be the one configured (issue 32: the hint
// swapped / and : and never said which entry to match).
func TestServerHint(t *testing.T) {
	for _, tc := range []struct{ server, other string }{
		{"sim1.example.org:2000", "sim1.example.org/2000"},
		{"sim1.example.org/2000", "sim1.example.org:2000"},
		{"[::1]:2000", "[::1]/2000"},
	} {
		hint := serverHint(tc.server)
		for _, want := range []string{`gives "` + tc.server + `"`, `lists "` + tc.other + `", give that`, "simulationServers", "SIMGATE_SERVER"} {
			if !strings.Contains(hint, want) {
				t.Errorf("%s: hint %q lacks %q", tc.server, hint, want)
			}
		}
	}
}
