package httpapi

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket limits: clients send nothing the coordinator needs, so a small
// read limit; a client that answers no ping within pongWait is dropped.
const (
	wsReadLimit  = 4096
	wsWriteWait  = 5 * time.Second
	closeTimeout = time.Second
)

func (a *API) checkOrigin(r *http.Request) bool {
	if len(a.o.AllowedOrigins) == 0 {
		return true // as the original: any page may embed a simulation
	}
	return slices.Contains(a.o.AllowedOrigins, r.Header.Get("Origin"))
}

// upgrade admits a WebSocket client within the cap and tracks it for shutdown.
func (a *API) upgrade(w http.ResponseWriter, r *http.Request, endpoint string) (*websocket.Conn, func(), bool) {
	if a.wsCount.Add(1) > int64(a.o.MaxWebSocketClients) {
		a.wsCount.Add(-1)
		a.refuse(w, endpoint, "too many WebSocket clients", "cap", a.o.MaxWebSocketClients)
		return nil, nil, false
	}
	if !a.admit() {
		a.wsCount.Add(-1)
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return nil, nil, false
	}
	conn, err := a.upgrader.Upgrade(w, r, nil)
	if err != nil {
		a.wsCount.Add(-1)
		a.wsWG.Done()
		return nil, nil, false // the upgrader has answered the client
	}
	gauge := a.o.Metrics.WebSocketClients.WithLabelValues(endpoint)
	gauge.Inc()
	conn.SetReadLimit(wsReadLimit)
	done := func() {
		_ = conn.Close()
		gauge.Dec()
		a.wsCount.Add(-1)
		a.wsWG.Done()
	}
	return conn, done, true
}

// refuse answers 503 to a client over a cap, counts it, and says so in the
// log at most once a minute per endpoint (a flood must not turn the log over).
func (a *API) refuse(w http.ResponseWriter, endpoint, why string, args ...any) {
	a.o.Metrics.Refused.WithLabelValues(endpoint).Inc()
	if n, ok := a.refusals.Allow(endpoint, time.Now()); ok {
		a.o.Logger.Warn("WebSocket client refused: "+why, append([]any{"endpoint", endpoint, "refused_since_last_line", n}, args...)...)
	}
	http.Error(w, why, http.StatusServiceUnavailable)
}

// admit counts a WebSocket client in for Close to wait on, unless Close has
// begun.
func (a *API) admit() bool {
	a.wsMu.Lock()
	defer a.wsMu.Unlock()
	if a.closed {
		return false
	}
	a.wsWG.Add(1)
	return true
}

// closeConn sends a close frame and gives the client a moment to answer it.
func closeConn(conn *websocket.Conn, code int, text string, readerDone <-chan struct{}) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(wsWriteWait))
	if readerDone == nil {
		_ = conn.SetReadDeadline(time.Now().Add(closeTimeout))
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}
	select {
	case <-readerDone:
	case <-time.After(closeTimeout):
	}
}

// sessionWS sends one text message with the /session answer, then a normal close.
func (a *API) sessionWS(w http.ResponseWriter, r *http.Request) {
	v, limited := a.visitor(r)
	if limited {
		a.limited.Inc()
		a.o.Metrics.TurnedAway("rate-limited")
		w.Header()["Content-Type"] = textPlain
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(limitedBody)
		return
	}
	conn, done, ok := a.upgrade(w, r, "session")
	if !ok {
		return
	}
	defer done()
	answer := a.sessionAnswer(r, v)
	_ = conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
	if err := conn.WriteMessage(websocket.TextMessage, answer); err != nil {
		return
	}
	closeConn(conn, websocket.CloseNormalClosure, "", nil)
}

// reader discards what the client sends, answers pings, and closes done
// when the client leaves or stops answering pings.
func (a *API) reader(conn *websocket.Conn, done chan<- struct{}) {
	defer close(done)
	pongWait := 2 * a.o.PingInterval
	_ = conn.SetReadDeadline(time.Now().Add(pongWait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		_, r, err := conn.NextReader()
		if err != nil {
			return
		}
		// Read the message out, so that the read limit applies to all of
		// it: a message skipped unread would escape it in fragments.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(pongWait))
	}
}

// pushLoop runs a WebSocket client that is sent next()'s message whenever
// changed fires and its version differs from the last one sent, pinged
// while idle, and closed with 1001 when the coordinator stops. A slow
// reader is sent the latest version when it is ready: versions in between
// are skipped, never queued.
func (a *API) pushLoop(conn *websocket.Conn, changed func() <-chan struct{}, next func() (*websocket.PreparedMessage, uint64)) {
	readerDone := make(chan struct{})
	go a.reader(conn, readerDone)
	ping := time.NewTicker(a.o.PingInterval)
	defer ping.Stop()
	sent, last := false, uint64(0)
	for {
		ch := changed() // before next(): no change may fall between the two
		if msg, version := next(); msg != nil && (!sent || version != last) {
			_ = conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
			if err := conn.WritePreparedMessage(msg); err != nil {
				return
			}
			sent, last = true, version
		}
		select {
		case <-ch:
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteWait)); err != nil {
				return
			}
		case <-readerDone:
			return
		case <-a.closing:
			closeConn(conn, websocket.CloseGoingAway, "coordinator stopping", readerDone)
			return
		}
	}
}

// availabilityWS pushes 1 or 0 at once and at every availability flip.
func (a *API) availabilityWS(w http.ResponseWriter, r *http.Request) {
	conn, done, ok := a.upgrade(w, r, "availability")
	if !ok {
		return
	}
	defer done()
	a.pushLoop(conn, a.o.Registry.AvailabilityChanged, func() (*websocket.PreparedMessage, uint64) {
		if a.o.Registry.Available() {
			return oneFrame, 1
		}
		return zeroFrame, 0
	})
}

// Close sends every WebSocket client a close frame and waits for them to go,
// at most until the deadline of wait.
func (a *API) Close(wait time.Duration) {
	a.wsMu.Lock()
	if !a.closed {
		a.closed = true
		close(a.closing)
	}
	a.wsMu.Unlock()
	a.loops.Wait() // they end at closing, within a tick
	ch := make(chan struct{})
	go func() { a.wsWG.Wait(); close(ch) }()
	if a.keepRelays.Load() {
		return // the relays go on; WaitRelays waits for them
	}
	select {
	case <-ch:
	case <-time.After(wait):
		a.o.Logger.Warn("WebSocket clients still open at shutdown deadline")
	}
}

// KeepRelays makes Close leave the waiting room's relayed sessions
// running: this process hands over to a new one (systemctl reload) and
// exits once they have ended (WaitRelays).
func (a *API) KeepRelays() { a.keepRelays.Store(true) }

// Relays is how many sessions the waiting room relays now.
func (a *API) Relays() int { return int(a.relayCount.Load()) }

// WaitRelays returns once every relayed session has ended, or ctx ends.
func (a *API) WaitRelays(ctx context.Context) {
	ch := make(chan struct{})
	go func() { a.relays.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// WebSocketClients is the number of WebSocket clients connected.
func (a *API) WebSocketClients() int { return int(a.wsCount.Load()) }

// The availability messages, framed once for every client.
var oneFrame, zeroFrame = mustFrame(one), mustFrame(zero)

func mustFrame(b []byte) *websocket.PreparedMessage {
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, b)
	if err != nil {
		panic(err) // a constant text message always frames
	}
	return pm
}

// monitorSlots counts the live /monitor clients, in all and per address.
type monitorSlots struct {
	mu           sync.Mutex // guards total and by (a leaf)
	max, perAddr int
	total        int
	by           map[string]int
}

func (m *monitorSlots) take(addr string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.total >= m.max || m.by[addr] >= m.perAddr {
		return false
	}
	m.total++
	m.by[addr]++
	return true
}

func (m *monitorSlots) give(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total--
	if m.by[addr]--; m.by[addr] <= 0 {
		delete(m.by, addr)
	}
}

func (m *monitorSlots) live() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total > 0
}
