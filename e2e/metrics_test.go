package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/simgate/simgate/internal/testutil"
)

// scrape reads /metrics with the Prometheus text parser, as a server would.
type scrape map[string]*dto.MetricFamily

func (f *farm) scrape(t *testing.T) scrape {
	t.Helper()
	resp, body, err := get(f.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics = %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the sample of family name whose labels include every pair given;
// missing is -1.
func (s scrape) value(name string, labels ...string) float64 {
	fam, ok := s[name]
	if !ok {
		return -1
	}
next:
	for _, m := range fam.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

// TestMetricsMoveWithTraffic sends real heartbeats, /session requests and
// WebSocket clients, and reads every figure the issue names off /metrics.
func TestMetricsMoveWithTraffic(t *testing.T) {
	const a, b = "127.0.0.1/3111", "127.0.0.1/2302"
	// The waiting room off: a full farm's "none" answer is counted here
	// (the room's own figures: TestWaitingRoom).
	f := startFarm(t, map[string]any{"simulationServers": []string{a, b}, "queue": map[string]any{"enabled": false}})
	before := f.scrape(t)
	for _, name := range []string{
		"simgate_heartbeats_received_total", "simgate_session_requests_total", "simgate_session_duration_seconds",
		"simgate_mails_pending", "simgate_nats_connections", "simgate_available", "simgate_sessions_handed_out",
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics lacks %s before any traffic", name)
		}
	}

	p := f.publisher(t, "metrics-test")
	p.send(a, "up", 20, 60) // a long interval: no silence while the test runs
	p.send(b, "up", 99, 60)
	if err := p.nc.Publish("simgate.load.127_0_0_1_3111", []byte(`{"v":1,"server":"127.0.0.1/3111"`)); err != nil {
		t.Fatal(err)
	}
	if err := p.nc.Publish("simgate.load.127_0_0_1_3111", []byte(`{"v":1,"server":"127.0.0.1/2302","status":"up","load":1,"interval":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	f.waitState(t, a, 5*time.Second, "up")
	f.waitState(t, b, 5*time.Second, "full")
	const placed = 3 // three visitors: one visitor's repeats would book once
	for i := range placed {
		if _, body, err := getAs(f.base+"/session", fmt.Sprintf("192.0.2.%d", i+1)); err != nil || !strings.HasPrefix(body, "ws://") {
			t.Fatalf("/session: %q, %v", body, err)
		}
	}
	p.send(a, "up", 98, 60)
	f.waitState(t, a, 5*time.Second, "full")
	expectText(t, f.base+"/session", noServer)
	ws := dial(t, strings.Replace(f.base, "http", "ws", 1)+"/")
	readText(t, ws, 5*time.Second)

	var after scrape
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		after = f.scrape(t)
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"simgate_heartbeats_received_total", nil, 3},
			{"simgate_heartbeats_dropped_total", []string{"reason", "schema"}, 1},
			{"simgate_heartbeats_dropped_total", []string{"reason", "subject"}, 1},
			{"simgate_session_requests_total", []string{"result", "placed"}, placed},
			{"simgate_session_requests_total", []string{"result", "none"}, 1},
			{"simgate_session_duration_seconds", nil, placed + 1},
			{"simgate_state_changes_total", []string{"state", "full"}, 2},
		} {
			got := after.value(c.name, c.labels...) - max(0, before.value(c.name, c.labels...))
			if got != c.want {
				return fmt.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"simgate_websocket_clients", []string{"endpoint", "availability"}, 1},
			{"simgate_server_load", []string{"server", a}, 98},
			{"simgate_server_state", []string{"server", b, "state", "full"}, 1},
			{"simgate_server_state", []string{"server", b, "state", "up"}, 0},
			{"simgate_sessions_handed_out", nil, placed},
			{"simgate_available", nil, 0},
			{"simgate_nats_connections", nil, before.value("simgate_nats_connections") + 1}, // the publisher
		} {
			if got := after.value(c.name, c.labels...); got != c.want {
				return fmt.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		return nil
	})
}

func expectPrefix(t *testing.T, url, prefix string) {
	t.Helper()
	_, body, err := get(url)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(body, prefix) {
		t.Errorf("GET %s = %q, want %s…", url, body, prefix)
	}
}

// TestRefusalsCountedByReason: issue 34. Each visitor turned away is
// counted once on /metrics under why (simgate_refusals_total{reason}),
// for every reason a real coordinator meets: no server up (down), all
// full, all drained, the repository blocked everywhere, the address over
// its rate; with the waiting room: the line full, a visitor who closed
// the page while waiting (gave-up), one who waited queue.maxWait
// (waited-too-long). The visitor reads the original's sentence
// throughout. (not-ready: TestReadyMeansReady.)
func TestRefusalsCountedByReason(t *testing.T) {
	const srv = "127.0.0.1/3411"
	f := startFarm(t, map[string]any{"simulationServers": []string{srv}, "queue": map[string]any{"enabled": false},
		"http": map[string]any{"sessionRate": 0.01, "sessionBurst": 1}})
	p := f.publisher(t, "refusals")
	beat := func(fields string) {
		p.publish(srv, []byte(fmt.Sprintf(`{"v":1,"server":%q,"interval":60,%s}`, srv, fields)))
	}
	ask := func(addr, query string) string {
		t.Helper()
		_, body, err := getAs(f.base+"/session"+query, addr)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	want := map[string]float64{}
	check := func(step string) {
		t.Helper()
		s := f.scrape(t)
		for _, reason := range []string{"down", "full", "drained", "blocked", "rate-limited", "line-full", "gave-up", "waited-too-long"} {
			if got := max(s.value("simgate_refusals_total", "reason", reason), 0); got != want[reason] {
				t.Errorf("after %s: simgate_refusals_total{reason=%q} = %v, want %v", step, reason, got, want[reason])
			}
		}
	}
	if b := ask("198.51.100.1", ""); !strings.HasPrefix(b, "Error: no simulation server") {
		t.Errorf("none heard: %q", b)
	}
	want["down"]++
	beat(`"status":"up","load":99`)
	f.waitState(t, srv, 5*time.Second, "full")
	ask("198.51.100.2", "")
	want["full"]++
	beat(`"status":"draining","load":10`)
	f.waitState(t, srv, 5*time.Second, "draining")
	ask("198.51.100.3", "")
	want["drained"]++
	beat(`"status":"up","load":10,"sharing":{"blockedRepositories":["https://github.com/"]}`)
	f.waitState(t, srv, 5*time.Second, "up")
	if b := ask("198.51.100.4", "?url=https://github.com/a/b/blob/main/worlds/w.wbt"); !strings.Contains(b, "blocked") {
		t.Errorf("blocked everywhere: %q", b)
	}
	want["blocked"]++
	ask("198.51.100.5", "")
	ask("198.51.100.5", "") // over its rate (a burst of one)
	want["rate-limited"]++
	check("the farm without a waiting room")

	sim := newSimStub(t)
	w := startFarm(t, map[string]any{"simulationServers": []string{sim.entry}, "queue": map[string]any{"max": 1, "maxWait": 1}})
	wp := w.publisher(t, "refusals-line")
	wp.publish(sim.entry, []byte(fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":99,"sessions":0,"maxSessions":20,"interval":60}`, sim.entry)))
	w.waitState(t, sim.entry, 5*time.Second, "full")
	first, answer := visit(t, w, "198.51.100.10", "")
	if first == nil {
		t.Fatalf("no place in line: %q", answer)
	}
	first.expect("queue: 1", 2*time.Second)
	if _, body, _ := getAs(w.base+"/session", "198.51.100.11"); !strings.HasPrefix(body, "Error:") {
		t.Errorf("the line of one is full: %q", body)
	}
	f, want = w, map[string]float64{"line-full": 1}
	_ = first.c.Close() // the visitor closes the page
	testutil.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := w.scrape(t).value("simgate_refusals_total", "reason", "gave-up"); got != 1 {
			return fmt.Errorf("gave-up %v", got)
		}
		return nil
	})
	want["gave-up"]++
	waiter, answer := visit(t, w, "198.51.100.12", "")
	if waiter == nil {
		t.Fatalf("no place in line: %q", answer)
	}
	waiter.expect("error: ", 4*time.Second) // queue.maxWait of 1 s
	waiter.closedWithin(2 * time.Second)
	want["waited-too-long"]++
	check("the waiting room")
}
