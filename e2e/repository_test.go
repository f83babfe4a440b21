package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// TestRepositoryAwarePlacement: PROTOCOL §1.1 from outside. Heartbeats carry
// each server's sharing policy; /session?url= (as the Webots client writes
// it, not encoded) goes to a server that will run the world, and a world no
// server would ever run gets a sentence that says why.
func TestRepositoryAwarePlacement(t *testing.T) {
	const ded, shared = "127.0.0.1/2701", "127.0.0.1/2702"
	f := startFarm(t, map[string]any{"simulationServers": []string{ded, shared}})
	p := f.publisher(t, "policy-test")
	p.publish(ded, []byte(`{"v":1,"server":"`+ded+`","status":"up","load":40,"interval":60,"maxSessions":100,`+
		`"sharing":{"allowedRepositories":["https://github.com/cyberbotics/"],"docker":false}}`))
	p.publish(shared, []byte(`{"v":1,"server":"`+shared+`","status":"up","load":10,"interval":60,"maxSessions":100,"instantLoad":12,`+
		`"sharing":{"blockedRepositories":["https://github.com/evil/"],"docker":true,"shareIdleTime":50}}`))
	f.waitState(t, ded, 5*time.Second, "up")
	f.waitState(t, shared, 5*time.Second, "up")

	for _, tc := range []struct{ url, want string }{
		{"https://github.com/cyberbotics/webots/blob/R2025a/projects/robots/gctronic/e-puck/worlds/e-puck.wbt", "ws://" + ded},
		{"https://github.com/someone/robots/blob/main/worlds/arm.wbt", "ws://" + shared},
		{"https%3A%2F%2Fgithub.com%2Fsomeone%2Frobots%2Fblob%2Fmain%2Fworlds%2Farm.wbt", "ws://" + shared},
		{"https://github.com/evil/thing/blob/main/worlds/x.wbt", "Error: no simulation server runs this project: none is dedicated to its repository, and none that shares its idle time takes it."},
	} {
		if _, body, err := getAs(f.base+"/session?url="+tc.url, "203.0.113.50"); err != nil || body != tc.want {
			t.Errorf("/session?url=%s = %q, %v; want %q", tc.url, body, err, tc.want)
		}
	}
	// Without a URL, or an older client's: the lowest load, as before.
	expectText(t, f.base+"/session", "ws://"+shared)

	// The policies and the placements by tier, on /api/servers and /metrics.
	testutil.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error { // the document is at most one refresh old
		_, body, err := get(f.base + "/api/servers")
		if err != nil {
			return err
		}
		for _, want := range []string{`"sharing":{"allowedRepositories":["https://github.com/cyberbotics/"],"blockedRepositories":[],"docker":false,"shareIdleTime":50}`,
			`"dedicatedSessions":1`, `"sharedSessions":2`} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("/api/servers lacks %s:\n%s", want, body)
			}
		}
		return nil
	})
	m := f.scrape(t)
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"simgate_placements_total", "tier", "dedicated", 1},
		// The plain and the encoded URL from one address: two bookings, as
		// two students of one class would be (PROTOCOL §1).
		{"simgate_placements_total", "tier", "shared", 2},
		{"simgate_placements_total", "tier", "any", 1},
		{"simgate_session_refusals_total", "reason", "not-shared", 1},
	} {
		if got := m.value(c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
}

// TestAgentsReadTheirSimulationConfig: real agents read real simulation.json
// files (webots-server's) and the coordinator places the Webots client's
// URLs by them. Both agents measure this one machine, so both are up or
// both full: the answers are asserted for either case.
func TestAgentsReadTheirSimulationConfig(t *testing.T) {
	const ded, shared = "127.0.0.1/3113", "127.0.0.1/3114"
	dir := t.TempDir()
	files := map[string]string{
		ded:    `{"port": 2000, "maxConnections": 20, "allowedRepositories": ["https://github.com/cyberbotics/"], "blockedRepositories": ["https://github.com/evil/"]}`,
		shared: `{"port": 2000, "docker": true, "shareIdleTime": 100, "blockedRepositories": ["https://github.com/evil/"]}`,
	}
	f := startFarm(t, map[string]any{"simulationServers": []string{ded, shared}})
	for server, content := range files {
		path := filepath.Join(dir, node(server)+".json")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		f.startAgent(t, server, "-simulation-config", path)
	}
	for server := range files {
		f.waitState(t, server, 10*time.Second, "up", "full")
	}
	cyber := "https://github.com/cyberbotics/webots/blob/R2025a/projects/robots/gctronic/e-puck/worlds/e-puck.wbt"
	// Each agent read its file before its first heartbeat: the states above carry the policies.
	_, body, err := getAs(f.base+"/session?url="+cyber, "203.0.113.60")
	if err != nil || (body != "ws://"+ded && body != noServer) {
		t.Errorf("the dedicated server's repository went to %q (%v), want ws://%s or, with this machine full, no server", body, err, ded)
	}
	if _, body, _ := getAs(f.base+"/session?url=https://github.com/evil/thing/blob/main/worlds/x.wbt", "203.0.113.61"); body != "Error: this project is blocked on every simulation server." {
		t.Errorf("a world every server blocks: %q", body)
	}
	if s := f.servers(t)[ded]; s.MaxSessions != 20 {
		t.Errorf("maxSessions %d, want the file's maxConnections (20)", s.MaxSessions)
	}
}

// TestHeldBookingFollowsTheFarm: PROTOCOL §1, a held booking is answered
// again only while its server would take that visitor now. An address at
// its cap (1 here) holds a booking on a server that shares its idle time;
// that server goes over its shareIdleTime: the visitor is placed afresh on
// the other; the other then blocks the world: the §1.1 sentence, not a
// refusal by the server it would have been sent to.
func TestHeldBookingFollowsTheFarm(t *testing.T) {
	const a, b = "127.0.0.1:2711", "127.0.0.1:2712"
	f := startFarm(t, map[string]any{"simulationServers": []string{a, b}, "http": map[string]any{"maxBookingsPerAddress": 1}})
	p := f.publisher(t, "held-test")
	beat := func(server string, load int, blocked string) {
		t.Helper()
		p.publish(server, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":%d,"interval":60,"maxSessions":100,`+
			`"sharing":{"blockedRepositories":[%s],"docker":true,"shareIdleTime":50}}`, server, load, blocked)))
	}
	beat(a, 10, "")
	beat(b, 30, "")
	f.waitState(t, a, 5*time.Second, "up")
	f.waitState(t, b, 5*time.Second, "up")
	const world = "https://github.com/someone/robots/blob/main/worlds/arm.wbt"
	ask := func() string {
		_, body, err := getAs(f.base+"/session?url="+world, "203.0.113.70")
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	if got := ask(); got != "ws://"+a {
		t.Fatalf("first answer %q, want ws://%s (the most idle room)", got, a)
	}
	beat(a, 60, "") // over its shareIdleTime for this world
	testutil.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := ask(); got != "ws://"+b {
			return fmt.Errorf("with %s over its shareIdleTime, the held visitor got %q, want ws://%s", a, got, b)
		}
		return nil
	})
	beat(b, 30, `"https://github.com/someone/"`)
	testutil.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := ask(); !strings.HasPrefix(got, "Error: ") || got == "ws://"+b {
			return fmt.Errorf("with %s blocking the world, the held visitor got %q", b, got)
		}
		return nil
	})
}

// validRequestURI reports whether s can stand in a request line as is.
func validRequestURI(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// TestBlockedSpellings: issue 31. A repository blocked on the only server
// that shares its idle time, spelled otherwise, is still refused.
func TestBlockedSpellings(t *testing.T) {
	const shared = "127.0.0.1/2703"
	f := startFarm(t, map[string]any{"simulationServers": []string{shared}})
	p := f.publisher(t, "spelling-test")
	p.publish(shared, []byte(`{"v":1,"server":"`+shared+`","status":"up","load":10,"interval":60,"maxSessions":100,"instantLoad":12,`+
		`"sharing":{"blockedRepositories":["https://github.com/evil/"],"docker":true,"shareIdleTime":50}}`))
	f.waitState(t, shared, 5*time.Second, "up")
	// Issue 31: the blocked repository spelled otherwise is still refused,
	// sent as the Webots client sends a URL or percent-encoded.
	const refused = "Error: this project is blocked on every simulation server."
	for _, spelling := range []string{
		"https://github.com./evil/thing/blob/main/worlds/x.wbt",
		"https://github.com.:443/evil/thing/blob/main/worlds/x.wbt",
		"https://github.com:0443/evil/thing/blob/main/worlds/x.wbt",
		"https://%67ithub.com/evil/thing/blob/main/worlds/x.wbt",
		"https://ｇｉｔｈｕｂ.ｃｏｍ/evil/thing/blob/main/worlds/x.wbt",
		"https://github。com/evil/thing/blob/main/worlds/x.wbt",
		"https://www.github.com/evil/thing/blob/main/worlds/x.wbt",
		"http://github.com/evil/thing/blob/main/worlds/x.wbt",
		"https:/github.com/evil/thing/blob/main/worlds/x.wbt",
		`https:\\github.com\evil\thing/blob/main/worlds/x.wbt`,
		" https://github.com/evil/thing/blob/main/worlds/x.wbt",
		"\thttps://github.com/evil/thing/blob/main/worlds/x.wbt",
	} {
		for _, sent := range []string{spelling, url.QueryEscape(spelling)} {
			if !validRequestURI(sent) {
				continue // not sendable unencoded
			}
			if _, body, err := getAs(f.base+"/session?url="+sent, "203.0.113.51"); err != nil || body != refused {
				t.Errorf("/session?url=%s = %q, %v; want it refused", sent, body, err)
			}
		}
	}
	if _, body, _ := getAs(f.base+"/session?url=https://github.com/good/thing/blob/main/worlds/x.wbt", "203.0.113.52"); body != "ws://"+shared {
		t.Errorf("a repository not blocked: %q", body)
	}
}
