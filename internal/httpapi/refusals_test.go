package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/metrics"
	"github.com/simgate/simgate/internal/waitroom"
)

// TestRefusalsByReason: issue 34. Every visitor turned away is counted
// once, under why (simgate_refusals_total and the monitor's summary): the
// farm full, drained, down, this member not ready, the repository run
// nowhere, the address over its rate, the line full; the visitor still
// reads the original's sentence.
func TestRefusalsByReason(t *testing.T) {
	const srv = "a.test/2000"
	up := func(load float64, sh *alloc.Sharing) alloc.Report {
		return alloc.Report{Server: srv, Status: alloc.StatusUp, Load: load, Sessions: -1, Interval: time.Minute, At: time.Now(), Sharing: sh}
	}
	tests := []struct {
		name    string
		prepare func(reg *alloc.Registry)
		opts    func(o *Options, reg *alloc.Registry)
		url     string
		asks    int
		want    string
	}{
		{"full", func(reg *alloc.Registry) { _ = reg.Apply(up(99, nil)) }, nil, "", 1, "full"},
		{"drained", func(reg *alloc.Registry) { _ = reg.Apply(up(10, nil)); reg.SetDrained(srv, "admin") }, nil, "", 1, "drained"},
		{"down", func(*alloc.Registry) {}, nil, "", 1, "down"},
		{"not ready", func(reg *alloc.Registry) { _ = reg.Apply(up(10, nil)); reg.Gate() }, nil, "", 1, "not-ready"},
		{"blocked", func(reg *alloc.Registry) {
			_ = reg.Apply(up(10, &alloc.Sharing{Blocked: []string{"https://github.com/"}}))
		}, nil, "?url=https://github.com/a/b/blob/main/worlds/w.wbt", 1, "blocked"},
		{"rate-limited", func(reg *alloc.Registry) { _ = reg.Apply(up(10, nil)) },
			func(o *Options, _ *alloc.Registry) { o.Limiter = NewLimiter(0.001, 1, nil) }, "", 2, "rate-limited"},
		{"line full", func(reg *alloc.Registry) { _ = reg.Apply(up(99, nil)) },
			func(o *Options, reg *alloc.Registry) { o.Line = waitroom.New(waitroom.Options{Seats: reg, Max: 1}) }, "", 2, "line-full"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := alloc.New(alloc.Options{Servers: []string{srv}, Threshold: 95, Seed: 1})
			tc.prepare(reg)
			m := metrics.New()
			o := Options{Registry: reg, Metrics: m}
			if tc.opts != nil {
				tc.opts(&o, reg)
			}
			api := New(o)
			t.Cleanup(func() { api.Close(time.Second) })
			for i := range tc.asks {
				req := httptest.NewRequest(http.MethodGet, "/session"+tc.url, nil)
				req.RemoteAddr = "192.0.2." + string(rune('1'+i)) + ":4000"
				if tc.want == "rate-limited" {
					req.RemoteAddr = "192.0.2.1:4000"
				}
				api.ServeHTTP(httptest.NewRecorder(), req)
			}
			got := m.TurnedAwayCounts()
			if got[tc.want] != 1 || len(got) != 1 {
				t.Errorf("turned away %v, want once %q", got, tc.want)
			}
		})
	}
}
