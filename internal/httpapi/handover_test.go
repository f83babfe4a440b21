package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/simgate/simgate/internal/testutil"
)

// A process that hands over (a reload) answers every request: a visitor
// it can place from what it last saw at once, everything else once the
// new process is ready, by the new process (proxied, the visitor's
// forwarded address kept); a live monitor socket is told to reconnect.
func TestHandOver(t *testing.T) {
	upgrader := websocket.Upgrader{}
	next := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setCORS(w.Header())
		if websocket.IsWebSocketUpgrade(r) {
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.WriteMessage(websocket.TextMessage, []byte("new process, "+r.Header.Get("X-Forwarded-For")))
			return
		}
		fmt.Fprintf(w, "new process: %s %s", r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(next.Close)
	addr, api := serve(t, DefaultLimits(), Options{})
	api.HandOver(next.Listener.Addr())

	get := func(path string) (*http.Response, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, string(body), err
	}
	// Placed from the last view, at once.
	resp, body, err := get("/session")
	if err != nil || body != "ws://a.test/2000" {
		t.Fatalf("/session while handing over: %q %v", body, err)
	}
	if n := len(resp.Header.Values("Access-Control-Allow-Origin")); n != 1 {
		t.Errorf("%d CORS origin headers", n)
	}
	// The rest is held until the new process is ready.
	type answer struct {
		body string
		err  error
	}
	held := make(chan answer, 1)
	go func() { _, body, err := get("/load?x=1"); held <- answer{body, err} }()
	wsURL := "ws://" + addr
	hdr := http.Header{"X-Forwarded-For": {"198.51.100.8"}}
	type socket struct {
		msg    string
		status int
		err    error
	}
	dial := func(path string, out chan<- socket) {
		c, resp, err := websocket.DefaultDialer.Dial(wsURL+path, hdr)
		s := socket{err: err}
		if resp != nil {
			s.status = resp.StatusCode
		}
		if err == nil {
			defer c.Close()
			_, m, err := c.ReadMessage()
			s.msg, s.err = string(m), err
		}
		out <- s
	}
	waiter, monitor := make(chan socket, 1), make(chan socket, 1)
	go dial("/wait/0123", waiter)
	go dial("/monitor", monitor)
	testutil.WaitFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := api.Held(); n != 3 {
			return fmt.Errorf("%d requests held", n)
		}
		return nil
	})
	select {
	case a := <-held:
		t.Fatalf("answered before the new process was ready: %q %v", a.body, a.err)
	default:
	}
	api.Release()
	if a := <-held; a.err != nil || a.body != "new process: /load?x=1 198.51.100.7" {
		t.Errorf("held /load: %q %v", a.body, a.err)
	}
	if s := <-waiter; s.err != nil || s.msg != "new process, 198.51.100.8" {
		t.Errorf("held waiting-room socket: %+v", s)
	}
	if s := <-monitor; s.status != http.StatusServiceUnavailable {
		t.Errorf("held monitor socket: %+v, want 503", s)
	}
	api.WaitHeld(nil)
	// Once the old process waits for its last requests, it takes no more.
	if resp, _, err := get("/load"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after WaitHeld: %v %v", resp, err)
	}
}
