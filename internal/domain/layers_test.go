package domain

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayers holds the package graph to the design (STYLE.md): the words
// live here and every package speaks them; the registry knows nothing of
// NATS, HTTP or mail; mail and the configuration know neither the registry
// nor the transport; HTTP knows no transport. Each rule says why; an edge
// it forbids fails the test with the rule.
func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/simgate/simgate/...").Output()
	if err != nil {
		t.Skipf("go list: %v", err) // a machine without the go command runs the rest
	}
	const mod = "github.com/simgate/simgate/"
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, mod) {
				imports[pkg] = append(imports[pkg], strings.TrimPrefix(imp, mod))
			}
		}
	}
	rules := []struct {
		from, to []string
		why      string
	}{
		{[]string{"internal/domain"}, []string{"internal/"}, "the words import nothing of simgate's"},
		{[]string{"internal/alloc"}, []string{"internal/bus", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator"},
			"the registry knows servers, loads and placement, nothing of NATS, HTTP, mail or configuration files"},
		{[]string{"internal/notify"}, []string{"internal/alloc", "internal/bus", "internal/httpapi", "internal/state", "internal/config"},
			"mail knows SMTP and receives events in the domain's words"},
		{[]string{"internal/config"}, []string{"internal/alloc", "internal/bus", "internal/httpapi", "internal/notify", "internal/state", "internal/coordinator"},
			"the configuration is parsed and checked in one place, in the domain's words; the coordinator turns it into each piece's options"},
		{[]string{"internal/httpapi"}, []string{"internal/bus", "internal/notify", "internal/state", "internal/config", "internal/coordinator"},
			"HTTP handlers know requests and call the registry (alloc, allowed: it is what they serve)"},
		{[]string{"internal/bus"}, []string{"internal/alloc", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator"},
			"the transport turns NATS messages into heartbeats, in its own and the domain's words"},
		{[]string{"internal/state"}, []string{"internal/alloc", "internal/httpapi", "internal/config", "internal/coordinator"},
			"the cluster's state store keeps mails (notify's) on JetStream (bus's payload limit and names: allowed, it is NATS), nothing of placement or HTTP"},
		{[]string{"internal/opsapi"}, []string{"internal/alloc", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator"},
			"the NATS service asks its Farm interface, defined where it is consumed"},
		{[]string{"internal/cluster"}, []string{"internal/alloc", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator"},
			"the cluster (who leads, quorum, size, bookings) knows NATS and asks the registry through its own interface"},
		{[]string{"internal/schema"}, []string{"internal/bus", "internal/alloc", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator", "internal/login", "internal/logging", "internal/agent"},
			"the wire contract imports nothing of simgate's but the words (domain): an agent and any client take it alone"},
		{[]string{"internal/agent", "internal/agent/agentcmd", "cmd/agent"}, []string{"internal/bus", "internal/state", "internal/coordinator", "internal/httpapi", "internal/alloc"},
			"the agent speaks the wire contract (schema) and links no server: the embedded NATS server is the coordinator's"},
		{[]string{"internal/waitroom"}, []string{"internal/bus", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator"},
			"the line knows visitors, tickets and places and asks the registry (alloc, allowed) for seats; the sockets are HTTP's"},
		{[]string{"internal/history"}, []string{"internal/bus", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator", "internal/capacity"},
			"the demand history records counters and samples (the registry's, alloc: allowed) into its own stream; planning from it is capacity's"},
		{[]string{"internal/capacity"}, []string{"internal/bus", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator"},
			"the what-if replays the history through the registry (alloc, allowed); it is served by HTTP and NATS, which ask it"},
		{[]string{"internal/poll"}, []string{"internal/bus", "internal/httpapi", "internal/notify", "internal/state", "internal/config", "internal/coordinator"},
			"the poller feeds the registry (alloc, allowed) from HTTP /load answers"},
	}
	for _, r := range rules {
		for _, from := range r.from {
			if _, ok := imports[from]; !ok && from != "internal/domain" {
				t.Errorf("rule for %s: no such package (a rule outlived its package?)", from)
			}
			for _, imp := range imports[from] {
				for _, to := range r.to {
					if imp == to || (strings.HasSuffix(to, "/") && strings.HasPrefix(imp, to)) {
						t.Errorf("%s imports %s: %s", from, imp, r.why)
					}
				}
			}
		}
	}
	// The load test and the test helpers are tools: no product package
	// imports them (issue 33), however it is reached.
	for _, bin := range []string{"cmd/coordinator", "cmd/agent"} {
		deps, err := exec.Command("go", "list", "-deps", mod+bin).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", bin, err)
		}
		for _, d := range strings.Fields(string(deps)) {
			if d == mod+"internal/loadtest" || d == mod+"internal/testutil" || d == mod+"internal/notify/smtptest" {
				t.Errorf("%s links %s: a tool of the tests, not of the product", bin, d)
			}
		}
	}
	// The agent links no NATS server at all, through any package (issue 33:
	// it linked 16 of nats-server's packages it never runs).
	deps, err := exec.Command("go", "list", "-deps", "github.com/simgate/simgate/cmd/agent").Output()
	if err != nil {
		t.Fatalf("go list -deps cmd/agent: %v", err)
	}
	for _, d := range strings.Fields(string(deps)) {
		if strings.Contains(d, "nats-server") {
			t.Errorf("cmd/agent links %s: the agent speaks internal/schema, the server is the coordinator's", d)
		}
	}
}

// TestCoordinatorWires: issue 33. internal/coordinator keeps wiring and
// lifetimes only, under 700 lines that are neither blank nor comments: the
// behaviour lives where its data does (mail in notify, readiness in
// cluster, drains and the farm bucket in state).
func TestCoordinatorWires(t *testing.T) {
	files, err := filepath.Glob("../coordinator/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no coordinator sources: %v", err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "//") {
				n++
			}
		}
	}
	t.Logf("internal/coordinator: %d lines of code", n)
	if n >= 700 {
		t.Errorf("internal/coordinator has %d lines of code, want under 700: move behaviour to the package whose data it uses", n)
	}
}
