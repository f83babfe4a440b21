package httpapi

// The waiting room's sockets (PROTOCOL §1.2): /session hands a visitor no
// server would take now a URL of the coordinator's own; the Webots client
// opens <that>/client, sends its start message and reads queue:, loading:
// and error: lines until the line seats it; then the coordinator opens the
// simulation server's /client, sends the start message unchanged and
// relays both ways until either side closes.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/waitroom"
)

// Line is what the handlers need of the waiting room's line.
type Line interface {
	Len() int
	Pass(force bool)
	Issue(v alloc.Visitor) (ticket string, ok bool)
	Open(ticket string) (*waitroom.Waiter, bool)
	Start(w *waitroom.Waiter)
	Leave(w *waitroom.Waiter)
	Taken(w *waitroom.Waiter)
	Requeue(w *waitroom.Waiter) bool
	Blocks() bool
	Position(w *waitroom.Waiter) (place int, wait time.Duration, known bool)
	Stats() (waiting int, oldest time.Duration)
}

// Waiting-room timings: a visitor hears its place at least this often; it
// must send its start message within startWait of opening its socket; a
// simulation server must accept the relayed socket within dialWait.
const (
	placeEvery = 10 * time.Second
	startWait  = 10 * time.Second
	dialWait   = 10 * time.Second
	// relayReadLimit bounds one relayed message (a controller's source
	// sent from the page, a scene): the waiting room itself reads only the
	// start message, under wsReadLimit.
	relayReadLimit = 16 << 20
)

// The waiting room's own lines (PROTOCOL §1.2: error: is shown as an alert).
const (
	badTicket  = "error: This waiting-room ticket is not valid any more. Please reload the page to get a new place in line."
	noStart    = "error: The page did not ask for a simulation. Please reload the page."
	gaveUpText = "error: No simulation server became free in time. Please try again later."
	noServerUp = "error: No simulation server is available at the moment."
	unreached  = "error: The simulation server given to you could not be reached. Please try again later."
	stopping   = "error: The session server is restarting. Please reload the page in a moment."
)

// fromProxy reports whether r came through a trusted proxy (the local
// Apache), whose X-Forwarded-* headers are believed.
func (a *API) fromProxy(r *http.Request) bool {
	if a.o.Limiter == nil {
		return false
	}
	ip, err := netip.ParseAddr(peerHost(r))
	return err == nil && a.o.Limiter.isTrusted(ip)
}

// waitHost is the host the visitor asked (X-Forwarded-Host from a trusted
// proxy, else Host), without its port; the configured server when neither
// names a plain host.
func (a *API) waitHost(r *http.Request) string {
	candidates := []string{r.Host}
	if a.fromProxy(r) {
		if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
			first, _, _ := strings.Cut(fh, ",")
			candidates = []string{strings.TrimSpace(first), r.Host}
		}
	}
	for _, h := range candidates {
		if host := plainHost(h); host != "" {
			return host
		}
	}
	return a.o.Server
}

// plainHost is h without its port when it is a host name or address made
// of the characters a URL's host may hold; "" otherwise.
func plainHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
	}
	if h == "" || len(h) > 253 {
		return ""
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-_[]:", c)) {
			return ""
		}
	}
	return h
}

// waitURL is the waiting-room URL of ticket for the visitor of r.
func (a *API) waitURL(r *http.Request, ticket string) []byte {
	host, port := a.waitHost(r), strconv.Itoa(a.o.Port)
	if a.o.SSL || a.o.PortRewrite {
		return []byte("wss://" + host + "/" + port + "/wait/" + ticket)
	}
	return []byte("ws://" + host + ":" + port + "/wait/" + ticket)
}

// ticket gives v a place in line when the room may seat it (out says why
// it was not placed): the waiting-room URL, ok; else ok is false and the
// caller answers as the original would; lineFull says the line had no
// room for v.
func (a *API) ticket(r *http.Request, v alloc.Visitor, out alloc.Outcome) (body []byte, ok, lineFull bool) {
	if a.o.Line == nil || r == nil || (out != alloc.AtCap && out != alloc.NoRoom) {
		return nil, false, false
	}
	if out == alloc.NoRoom && !a.o.Registry.Waitable(v.URL) {
		return nil, false, false
	}
	t, ok := a.o.Line.Issue(v)
	if !ok {
		a.o.Metrics.QueueRefused.Inc()
		return nil, false, true
	}
	a.o.Metrics.QueueTickets.Inc()
	return a.waitURL(r, t), true, false
}

// wait serves /wait/<ticket> and /wait/<ticket>/client.
func (a *API) wait(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "a waiting-room ticket is opened as a WebSocket", http.StatusBadRequest)
		return
	}
	conn, done, ok := a.upgrade(w, r, "wait")
	if !ok {
		return
	}
	defer done()
	var waiter *waitroom.Waiter
	if a.o.Line != nil {
		waiter, ok = a.o.Line.Open(r.PathValue("ticket"))
	}
	if !ok {
		a.o.Metrics.QueueForged.Inc()
		a.sayAndClose(conn, badTicket, websocket.ClosePolicyViolation)
		return
	}
	start, err := readStart(conn)
	if err != nil {
		a.o.Line.Leave(waiter)
		a.sayAndClose(conn, noStart, websocket.CloseUnsupportedData)
		return
	}
	in := make(chan message, 16)
	readerDone := make(chan struct{})
	go a.relayReader(conn, in, readerDone)
	a.o.Line.Start(waiter)
	a.waitForSeat(conn, waiter, start, in, readerDone)
}

// message is one WebSocket message, relayed as it came.
type message struct {
	kind int
	data []byte
}

// readStart reads the client's first message, its start request
// ({"start":{…}}), within startWait.
func readStart(conn *websocket.Conn) (message, error) {
	_ = conn.SetReadDeadline(time.Now().Add(startWait))
	kind, data, err := conn.ReadMessage()
	if err != nil {
		return message{}, err
	}
	if kind != websocket.TextMessage || !strings.Contains(string(data), `"start"`) {
		return message{}, fmt.Errorf("the first message is not a start request")
	}
	return message{kind, data}, nil
}

// relayReader reads the client's messages into in until it leaves,
// answering pings; while the visitor waits, a client that answers no ping
// within two intervals is gone.
func (a *API) relayReader(conn *websocket.Conn, in chan<- message, done chan<- struct{}) {
	defer close(done)
	pongWait := 2 * a.o.PingInterval
	conn.SetReadLimit(relayReadLimit)
	_ = conn.SetReadDeadline(time.Now().Add(pongWait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		kind, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(pongWait))
		select {
		case in <- message{kind, data}:
		case <-a.closing:
			if !a.keepRelays.Load() {
				return
			}
			in <- message{kind, data} // a relay outlives a reload
		}
	}
}

// waitForSeat tells the visitor its place until the line seats it or lets
// it go, then relays its session.
func (a *API) waitForSeat(conn *websocket.Conn, waiter *waitroom.Waiter, start message, in <-chan message, readerDone <-chan struct{}) {
	tell := time.NewTicker(placeEvery)
	defer tell.Stop()
	ping := time.NewTicker(a.o.PingInterval)
	defer ping.Stop()
	var early []message // what the client sent while it waited, relayed after start
	lastPlace := -1
	say := func() bool {
		place, eta, known := a.o.Line.Position(waiter)
		if place == lastPlace && lastPlace > 0 {
			return a.send(conn, placeLine(place, eta, known))
		}
		lastPlace = place
		return a.send(conn, "queue: "+strconv.Itoa(place)) && a.send(conn, placeLine(place, eta, known))
	}
	if !say() {
		a.o.Line.Leave(waiter)
		return
	}
	for {
		select {
		case server := <-waiter.Seat():
			a.o.Line.Taken(waiter)
			if !a.relay(conn, waiter, server, start, early, in, readerDone) {
				return
			}
			// The seat could not be reached: back to its place in line.
			if !a.o.Line.Requeue(waiter) {
				a.sayAndCloseReading(conn, unreached, websocket.CloseTryAgainLater, readerDone)
				return
			}
			lastPlace = -1
			if !say() {
				a.o.Line.Leave(waiter)
				return
			}
		case why := <-waiter.Out():
			text := noServerUp
			if why == waitroom.GaveUp {
				text = gaveUpText
			}
			a.sayAndCloseReading(conn, text, websocket.CloseNormalClosure, readerDone)
			return
		case <-waiter.Changed():
			if !say() {
				a.o.Line.Leave(waiter)
				return
			}
		case <-tell.C:
			lastPlace = -1 // the place again, as the contract asks every 10 s
			if !say() {
				a.o.Line.Leave(waiter)
				return
			}
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteWait)); err != nil {
				a.o.Line.Leave(waiter)
				return
			}
		case m := <-in:
			if len(early) < cap(in) {
				early = append(early, m)
			}
		case <-readerDone:
			a.o.Line.Leave(waiter)
			return
		case <-a.closing:
			a.o.Line.Leave(waiter)
			a.sayAndCloseReading(conn, stopping, websocket.CloseGoingAway, readerDone)
			return
		}
	}
}

// placeLine is the loading: sentence for a place and, once known, the
// expected wait.
func placeLine(place int, eta time.Duration, known bool) string {
	s := "loading: All simulation servers are busy. You are number " + strconv.Itoa(place) + " in line"
	if !known {
		return s + "."
	}
	switch m := int((eta + time.Minute - 1) / time.Minute); {
	case eta < time.Minute:
		return s + "; expected wait: less than a minute."
	case m == 1:
		return s + "; expected wait: about 1 min."
	default:
		return s + "; expected wait: about " + strconv.Itoa(m) + " min."
	}
}

// send writes one text line to the client.
func (a *API) send(conn *websocket.Conn, text string) bool {
	_ = conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
	return conn.WriteMessage(websocket.TextMessage, []byte(text)) == nil
}

// sayAndClose sends text and closes with code, before any reader runs.
func (a *API) sayAndClose(conn *websocket.Conn, text string, code int) {
	if a.send(conn, text) {
		closeConn(conn, code, "", nil)
	}
}

// sayAndCloseReading is sayAndClose while relayReader reads.
func (a *API) sayAndCloseReading(conn *websocket.Conn, text string, code int, readerDone <-chan struct{}) {
	if a.send(conn, text) {
		closeConn(conn, code, "", readerDone)
	}
}

// relay opens server's /client for the seated visitor, sends its start
// message (and what it sent while waiting) unchanged, and relays both ways
// until either side closes; then it closes the other at once. It returns
// false once the session has run (or the visitor left), true when the
// server could not be reached and the visitor may wait again.
func (a *API) relay(conn *websocket.Conn, waiter *waitroom.Waiter, server string, start message, early []message, in <-chan message, readerDone <-chan struct{}) bool {
	target := string(a.scheme) + server + "/client"
	ctx, cancel := context.WithTimeout(context.Background(), dialWait)
	dialer := websocket.Dialer{HandshakeTimeout: dialWait, ReadBufferSize: 4096, WriteBufferSize: 4096}
	up, resp, err := dialer.DialContext(ctx, target, nil)
	cancel()
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		a.o.Logger.Warn("waiting room: the seat's simulation server did not accept the session", "server", server, "url", target, "error", err)
		return true
	}
	defer up.Close()
	up.SetReadLimit(relayReadLimit)
	a.wsMu.Lock()
	if a.closed { // stopping: no new session here (WaitRelays may be waiting)
		a.wsMu.Unlock()
		a.closeBoth(conn, up, readerDone)
		return false
	}
	a.relays.Add(1)
	a.wsMu.Unlock()
	a.relayCount.Add(1)
	a.o.Metrics.Relayed.Inc()
	defer func() {
		a.o.Metrics.Relayed.Dec()
		a.relayCount.Add(-1)
		a.relays.Done()
	}()
	for _, m := range append([]message{start}, early...) {
		_ = up.SetWriteDeadline(time.Now().Add(wsWriteWait))
		if err := up.WriteMessage(m.kind, m.data); err != nil {
			a.closeBoth(conn, up, readerDone)
			return false
		}
	}
	// The visitor runs a simulation now and may stay silent for long: the
	// pings go on, and a browser answers them by itself.
	ping := time.NewTicker(a.o.PingInterval)
	defer ping.Stop()
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		for {
			kind, data, err := up.ReadMessage()
			if err != nil {
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(wsWriteWait))
			if err := conn.WriteMessage(kind, data); err != nil {
				return
			}
		}
	}()
	closing := a.closing
	for {
		select {
		case <-ping.C:
			_ = conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteWait))
		case m := <-in:
			_ = up.SetWriteDeadline(time.Now().Add(wsWriteWait))
			if err := up.WriteMessage(m.kind, m.data); err != nil {
				a.closeBoth(conn, up, readerDone)
				<-upDone
				return false
			}
		case <-readerDone:
			// The visitor left: the simulation server ends its simulation
			// when its socket closes.
			_ = up.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(wsWriteWait))
			_ = up.Close()
			<-upDone
			a.o.Metrics.RelaysEnded.WithLabelValues("visitor").Inc()
			return false
		case <-upDone:
			closeConn(conn, websocket.CloseNormalClosure, "", readerDone)
			a.o.Metrics.RelaysEnded.WithLabelValues("server").Inc()
			return false
		case <-closing:
			if a.keepRelays.Load() {
				closing = nil // handed over: this session runs on here until it ends
				continue
			}
			a.closeBoth(conn, up, readerDone)
			<-upDone
			a.o.Metrics.RelaysEnded.WithLabelValues("stop").Inc()
			return false
		}
	}
}

// closeBoth closes the visitor's socket and the simulation server's.
func (a *API) closeBoth(conn, up *websocket.Conn, readerDone <-chan struct{}) {
	_ = up.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(wsWriteWait))
	_ = up.Close()
	closeConn(conn, websocket.CloseGoingAway, "", readerDone)
}
