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
