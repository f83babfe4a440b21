package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// metricName is a simgate metric named in a query.
var metricName = regexp.MustCompile(`simgate_[a-z_]+`)

// TestAlertsAndDashboardShip: issue 34. The alert rules pass promtool's
// check and their unit tests (deploy/prometheus), and every metric the
// rules and the Grafana dashboard (deploy/grafana) query is one a running
// coordinator serves on /metrics; every panel has a query.
func TestAlertsAndDashboardShip(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool is not installed (.ci/run installs Debian's prometheus, which has it)")
	}
	for _, args := range [][]string{{"check", "rules", "simgate.rules.yml"}, {"test", "rules", "simgate.rules.test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = "../deploy/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// A coordinator with a server heard from and the waiting room on: the
	// per-server gauges and the line's figures are served.
	const srv = "127.0.0.1:3411"
	f := startFarm(t, map[string]any{"simulationServers": []string{srv}, "queue": map[string]any{"enabled": true}})
	f.publisher(t, srv).beat(srv, "up", 10)
	f.waitState(t, srv, 10*time.Second, "up")
	served := f.scrape(t)

	named := map[string][]string{} // metric → where it is asked for
	rules, err := os.ReadFile("../deploy/prometheus/simgate.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") {
			for _, m := range metricName.FindAllString(l, -1) {
				named[m] = append(named[m], "the alert rules")
			}
		}
	}
	data, err := os.ReadFile("../deploy/grafana/simgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("the dashboard has no panel")
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			ms := metricName.FindAllString(q.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q: %q names no simgate metric", p.Title, q.Expr)
			}
			for _, m := range ms {
				named[m] = append(named[m], "panel "+p.Title)
			}
		}
	}
	for m, where := range named {
		base := m
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suffix); ok && served[b] != nil {
				base = b
			}
		}
		if served[base] == nil {
			t.Errorf("%s (%s) is not served on /metrics", m, strings.Join(where, ", "))
		}
	}
	t.Logf("%d metrics named by the rules and %d panels, all served", len(named), len(dash.Panels))
}
