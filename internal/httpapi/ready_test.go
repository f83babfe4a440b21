package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// A visitor that reaches a coordinator not ready yet (a balancer that has
// not checked a restarted member) is held until it is ready, up to
// ReadyHold, rather than refused; HEAD books nothing and is not held.
func TestSessionHeldUntilReady(t *testing.T) {
	tests := []struct {
		name   string
		method string
		opens  bool // the coordinator becomes ready while the visitor waits
		want   string
	}{
		{"ready while held", http.MethodGet, true, "ws://a.test/2000"},
		{"never ready", http.MethodGet, false, string(noServer)},
		{"HEAD is not held", http.MethodHead, false, string(noServer)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := alloc.New(alloc.Options{Servers: []string{"a.test/2000"}, Threshold: 95, Seed: 1, Gated: true})
			if err := reg.Apply(alloc.Report{Server: "a.test/2000", Status: alloc.StatusUp, Load: 10, Sessions: -1,
				Interval: time.Minute, At: time.Now()}); err != nil {
				t.Fatal(err)
			}
			var ready atomic.Bool
			opened := make(chan struct{})
			waiting := make(chan struct{}, 1)
			api := New(Options{Registry: reg, Logger: slog.New(slog.DiscardHandler), ReadyHold: 200 * time.Millisecond,
				Ready: func() (bool, string) { return ready.Load(), "waiting to hear from a.test/2000" },
				AwaitReady: func(ctx context.Context) bool {
					waiting <- struct{}{}
					select {
					case <-opened:
						return true
					case <-ctx.Done():
						return false
					}
				}})
			t.Cleanup(func() { api.Close(time.Second) })
			if tc.opens {
				go func() {
					<-waiting // the visitor is held: now the coordinator gets ready
					reg.Open()
					ready.Store(true)
					close(opened)
				}()
			}
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, httptest.NewRequest(tc.method, "/session", nil))
			if body, _ := io.ReadAll(rec.Body); string(body) != tc.want {
				t.Errorf("%s /session = %q, want %q", tc.method, body, tc.want)
			}
			if held := len(waiting) > 0 || tc.opens; held != (tc.method == http.MethodGet) {
				t.Errorf("%s /session held: %v", tc.method, held)
			}
		})
	}
}
