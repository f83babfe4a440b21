package poll

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/testutil"
)

// stub is a simulation server's /load, answering whatever body holds.
func stub(t *testing.T, body *atomic.Value) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/load" {
			http.NotFound(w, r)
			return
		}
		b := body.Load().(string)
		if b == "500" {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, b)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func view(r *alloc.Registry, server string) alloc.View {
	for _, v := range r.Snapshot() {
		if v.Server == server {
			return v
		}
	}
	return alloc.View{}
}

// TestPolling: a number is the load; silence, an error or a body that is no
// number is no report (the silence timeout decides "down", never one poll);
// an agent's heartbeat stops the polling, and its silence resumes it.
func TestPolling(t *testing.T) {
	var body atomic.Value
	body.Store("37.5\n")
	entry := stub(t, &body)
	reg := alloc.New(alloc.Options{Servers: []string{entry}, Threshold: 95})
	const period = 50 * time.Millisecond
	p := New(Options{Servers: []string{entry}, Registry: reg, Period: period,
		Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	go func() { // the coordinator's silence sweep
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				reg.Sweep(now)
			}
		}
	}()

	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if v := view(reg, entry); v.State != alloc.Up || v.Load != 37.5 || v.Source != alloc.SourcePoll {
			return fmt.Errorf("%+v", v)
		}
		return nil
	})
	for _, bad := range []string{"nan", "load: 12", "", "500", "1e999"} {
		body.Store(bad)
		// No report from a bad answer: the server goes down by silence only.
		testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if v := view(reg, entry); v.State != alloc.Down || !strings.Contains(v.Reason, "/load did not answer") {
				return fmt.Errorf("%q: %+v", bad, v)
			}
			return nil
		})
		if v := view(reg, entry); v.Load != 37.5 {
			t.Errorf("%q changed the load to %v", bad, v.Load)
		}
		body.Store("37.5")
		testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if v := view(reg, entry); v.State != alloc.Up {
				return fmt.Errorf("%+v", v)
			}
			return nil
		})
	}

	// An agent speaks: polling stops, and a poll never overrides it.
	body.Store("80")
	agentRep := alloc.Report{Server: entry, Status: alloc.StatusUp, Load: 10, Sessions: -1, Interval: 200 * time.Millisecond, At: time.Now()}
	if err := reg.Apply(agentRep); err != nil {
		t.Fatal(err)
	}
	if reg.WantsPoll(entry, time.Now()) {
		t.Error("polling wanted while an agent speaks")
	}
	polled := agentRep
	polled.Polled, polled.Load = true, 80
	if err := reg.Apply(polled); err != alloc.ErrAgentSpeaks {
		t.Errorf("a poll beside a live agent: %v, want ErrAgentSpeaks", err)
	}
	// Its silence (3 × its interval) gives the server back to polling.
	testutil.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if v := view(reg, entry); v.Source != alloc.SourcePoll || v.Load != 80 {
			return fmt.Errorf("%+v", v)
		}
		return nil
	})
}

func TestURL(t *testing.T) {
	for _, tt := range []struct {
		entry string
		ssl   bool
		want  string
	}{
		{"cyberbotics1.epfl.ch/2000", true, "https://cyberbotics1.epfl.ch/2000/load"},
		{"localhost:2000", false, "http://localhost:2000/load"},
	} {
		if got := URL(tt.entry, tt.ssl); got != tt.want {
			t.Errorf("URL(%q, %v) = %q, want %q", tt.entry, tt.ssl, got, tt.want)
		}
	}
}

// TestRedirectsStayOnTheServer: a redirect on the polled server's own host
// is followed; one to another host, or to a /session (which would book a
// session at every poll), is not.
func TestRedirectsStayOnTheServer(t *testing.T) {
	var other atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other.Add(1)
		_, _ = io.WriteString(w, "5")
	}))
	t.Cleanup(elsewhere.Close)
	var sessions atomic.Int64
	var target atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/load":
			http.Redirect(w, r, target.Load().(string), http.StatusFound)
		case "/real-load":
			_, _ = io.WriteString(w, "42")
		case "/session":
			sessions.Add(1)
			_, _ = io.WriteString(w, "ws://x")
		}
	}))
	t.Cleanup(srv.Close)
	client := (&Poller{}).client()
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"/real-load", true},
		{elsewhere.URL + "/load", false},
		{"/session", false},
	} {
		target.Store(tc.target)
		resp, err := client.Get(srv.URL + "/load")
		if err == nil {
			resp.Body.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("redirect to %s: %v, want followed %v", tc.target, err, tc.ok)
		}
	}
	if other.Load() != 0 || sessions.Load() != 0 {
		t.Errorf("another host polled %d times, /session asked %d times", other.Load(), sessions.Load())
	}
}
