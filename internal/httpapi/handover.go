package httpapi

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/simgate/simgate/internal/alloc"
)

// A reload (systemctl reload) hands the HTTP port over to a new process
// that first needs the NATS port and the state store this process lets go
// of: seconds during which only this process can answer. So from HandOver
// on, this process answers what it still can and holds the rest:
//
//   - GET /session is placed from the registry as this process last saw
//     it (heartbeats stopped coming a moment ago), for at most
//     staleLimit; a visitor it cannot place is held;
//   - every other request is held until Release (the new process is
//     ready), then proxied to it, so the visitor gets the new process's
//     answer (a waiting-room ticket, /readyz, the monitor page);
//   - a live /monitor or / socket, which lives for hours and reconnects
//     by itself, is answered 503 at Release rather than proxied: the old
//     process must not live on for it;
//   - every answer closes its connection.
//
// A balancer in front sees an answer from every request, never a
// connection left waiting unanswered.

// staleLimit is how long after HandOver this process still places from
// the registry it last saw: a heartbeat interval or two, the time the new
// process takes to start in a cluster, and no longer.
const staleLimit = 10 * time.Second

// heldWrite bounds the answer to a held request: the longest a reload
// waits for the new process (the coordinator's handover wait), and the
// proxied answer.
const heldWrite = 45 * time.Second

// handover is the state of a process that hands over.
type handover struct {
	since    time.Time     // when it began
	released chan struct{} // closed when the new process is ready
	proxy    *httputil.ReverseProxy
	// mu orders holding (held.Add) before Release's wait for them.
	mu     sync.Mutex
	closed bool
	held   sync.WaitGroup
	count  atomic.Int64 // requests held so far
}

// HandOver starts answering as a process that hands over to the one
// listening on listener (the new process shares this process's listener):
// see above.
func (a *API) HandOver(listener net.Addr) {
	target := &url.URL{Scheme: "http", Host: loopback(listener)}
	h := &handover{since: time.Now(), released: make(chan struct{})}
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			// The new process tells the visitor's address as Apache said
			// it, not from this hop (Rewrite drops these headers).
			for _, k := range forwardedHeaders {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
		},
		ErrorLog: slog.NewLogLogger(a.o.Logger.Handler(), slog.LevelWarn),
	}
	a.handing.Store(h)
}

var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip"}

// Release lets the held requests go to the new process, which is ready.
func (a *API) Release() {
	if h := a.handing.Load(); h != nil {
		close(h.released)
	}
}

// Held is how many requests were held for the new process so far.
func (a *API) Held() int64 {
	if h := a.handing.Load(); h != nil {
		return h.count.Load()
	}
	return 0
}

// WaitHeld returns once every held or proxied request has been answered
// (a proxied waiting-room socket: once it closes), or done is closed.
func (a *API) WaitHeld(done <-chan struct{}) {
	h := a.handing.Load()
	if h == nil {
		return
	}
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	ch := make(chan struct{})
	go func() { h.held.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-done:
	}
}

// serveHandingOver answers r as a process that hands over (h, from
// HandOver) does.
func (a *API) serveHandingOver(h *handover, w http.ResponseWriter, r *http.Request) {
	// The connection closes after this answer, so that the client's next
	// request reaches the new process. Idle keep-alive connections are
	// left alone: closing them under a client that is just sending on one
	// lost that request (an EOF); they close after their next answer.
	upgrade := websocket.IsWebSocketUpgrade(r)
	if !upgrade {
		w.Header().Set("Connection", "close")
	}
	if r.URL.Path == "/session" && r.Method == http.MethodGet && !upgrade &&
		time.Since(h.since) < staleLimit && a.placeStale(w, r) {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		setCORS(w.Header())
		http.Error(w, "the session server is restarting: try again", http.StatusServiceUnavailable)
		return
	}
	h.held.Add(1)
	h.mu.Unlock()
	defer h.held.Done()
	h.count.Add(1)
	// Held, the answer may come after the server's write timeout.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(heldWrite))
	select {
	case <-h.released:
	case <-r.Context().Done():
		return
	}
	if upgrade && !strings.HasPrefix(r.URL.Path, "/wait/") && r.URL.Path != "/session" {
		setCORS(w.Header())
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the session server is restarting: reconnect", http.StatusServiceUnavailable)
		return
	}
	if upgrade {
		// The socket outlives the server's read and write timeouts.
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
	}
	h.proxy.ServeHTTP(w, r)
}

// placeStale answers GET /session from the registry as this process last
// saw it, when it places the visitor; false when it does not (the visitor
// is held for the new process).
func (a *API) placeStale(w http.ResponseWriter, r *http.Request) bool {
	v, limited := a.visitor(r)
	if limited || len(v.URL) > MaxWorldURL {
		return false // the new process answers it as it would
	}
	name, out := a.o.Registry.Admit(v, false)
	if out != alloc.Placed {
		return false
	}
	setCORS(w.Header())
	w.Header()["Content-Type"] = textPlain
	_, _ = w.Write(a.serverURL(name))
	a.placed.Inc()
	return true
}

// loopback is where this machine reaches the listener at addr: its own
// address, or loopback for one on every address.
func loopback(addr net.Addr) string {
	a, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}
