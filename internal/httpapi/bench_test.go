package httpapi

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// benchWriter is a ResponseWriter that keeps nothing, so that the benchmark
// measures the handler and not a recorder.
type benchWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(c int)   { w.code = c }
func (w *benchWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
func (w *benchWriter) WriteString(s string) (int, error) {
	w.n += len(s)
	return len(s), nil
}

func benchAPI(b *testing.B, n int) *API {
	b.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("sim%d.example.org/2000", i)
	}
	reg := alloc.New(alloc.Options{Servers: names, Threshold: 95, Seed: 1})
	for i, name := range names {
		if err := reg.Apply(alloc.Report{Server: name, Status: alloc.StatusUp, Load: float64(i % 50), Sessions: 1,
			MaxSessions: 1_000_000, Interval: time.Second, At: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	api := New(Options{Registry: reg})
	b.Cleanup(func() { api.Close(time.Second) })
	return api
}

// BenchmarkSessionHandler is /session end to end inside the handler (CORS
// headers, placement, metrics, answer), against the constant handler that is
// the floor of any Go HTTP answer: go test -bench Handler -benchmem ./internal/httpapi
func BenchmarkSessionHandler(b *testing.B) {
	req, _ := http.NewRequest("GET", "http://session.example.org/session", nil)
	for _, n := range []int{4, 10_000} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			api := benchAPI(b, n)
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				api.ServeHTTP(w, req)
			}
			if w.n == 0 {
				b.Fatal("no answer")
			}
		})
	}
	// One visitor asking again while its booking is unconfirmed: the
	// answer is repeated, nothing is booked (PROTOCOL §1).
	b.Run("servers=10000/visitor-repeats", func(b *testing.B) {
		api := benchAPI(b, 10_000)
		req := req.Clone(req.Context())
		req.RemoteAddr = "198.51.100.7:50000"
		w := &benchWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			api.ServeHTTP(w, req)
		}
	})
	b.Run("baseline=constant", func(b *testing.B) {
		body := []byte("ws://localhost:2000")
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = textPlain
			_, _ = w.Write(body)
		})
		w := &benchWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
	})
}
