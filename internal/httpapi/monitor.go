package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// The page is one document with its CSS and script inline: the seed's
// Apache rules forward /monitor alone, so nothing else could be fetched.
//
//go:embed assets/monitor.html
var monitorHTML string

//go:embed assets/monitor.css
var monitorCSS string

//go:embed assets/monitor.js
var monitorJS string

var monitorTmpl = template.Must(template.New("monitor").Parse(monitorHTML))

// monitorRefresh is how often a live monitor client is sent a new document
// when anything changed; well inside the 1 s the page promises.
const monitorRefresh = 250 * time.Millisecond

// monitor serves the page, its JSON feed (?feed=json, for clients behind a
// proxy that does not pass WebSocket), or the live WebSocket feed.
func (a *API) monitor(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		a.monitorWS(w, r)
		return
	}
	if r.URL.Query().Get("feed") == "json" {
		a.servers(w, r)
		return
	}
	admin := ""
	if _, ok := r.URL.Query()["admin"]; ok {
		// An admin's page: the browser asks for the credentials, and the
		// page shows the drain buttons. Never on an anonymous page.
		if admin = a.admin(r); admin == "" {
			a.askCredentials(w)
			return
		}
	}
	doc := a.serversDoc()
	initial, _ := json.Marshal(doc)
	mean := "N/A"
	if doc.Summary.MeanLoad != nil {
		mean = fmt.Sprintf("%.1f%%", *doc.Summary.MeanLoad)
	}
	var page bytes.Buffer
	if err := monitorTmpl.Execute(&page, map[string]any{
		"Doc":      doc,
		"MeanLoad": mean,
		"Initial":  template.JS(initial),
		"CSS":      template.CSS(monitorCSS),
		"JS":       template.JS(monitorJS),
		"Admin":    admin,
	}); err != nil {
		a.o.Logger.Error("monitor page not rendered", "error", err)
		http.Error(w, "Error: the monitor page could not be rendered.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = page.WriteTo(w)
}

// monitorWS pushes the shared farm document to a live monitor page each
// time it changes. /monitor clients have their own cap, and one per address,
// besides the cap on all WebSocket clients.
func (a *API) monitorWS(w http.ResponseWriter, r *http.Request) {
	_, addr := a.client(r)
	if !a.monitors.take(addr) {
		a.refuse(w, "monitor", "too many live monitor pages", "address", addr)
		return
	}
	defer a.monitors.give(addr)
	conn, done, ok := a.upgrade(w, r, "monitor")
	if !ok {
		return
	}
	defer done()
	a.pushLoop(conn, a.feed.changes, a.feed.frame)
}

// admin names the admin whose HTTP Basic credentials r carries, or "".
func (a *API) admin(r *http.Request) string {
	user, pass, ok := r.BasicAuth()
	if !ok || a.o.Admin == nil {
		return ""
	}
	_, addr := a.client(r)
	return a.o.Admin(addr, user, pass)
}

func (a *API) askCredentials(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="simgate admin", charset="UTF-8"`)
	http.Error(w, "an admin's NATS user name and password (role admin in nats.users)", http.StatusUnauthorized)
}

// monitorAction is an admin's drain or undrain from the monitor page:
// POST /monitor with the admin's credentials, the header
// X-Simgate-Action (which no cross-site form can send and the CORS rules
// do not let a cross-site script send) and {"action": "drain"|"undrain",
// "server": entry}. It goes to /monitor because the seed's Apache rules
// forward that path and no other of the page's.
func (a *API) monitorAction(w http.ResponseWriter, r *http.Request) {
	admin := a.admin(r)
	if admin == "" {
		a.askCredentials(w)
		return
	}
	if r.Header.Get("X-Simgate-Action") == "" || (r.Header.Get("Origin") != "" && !sameOrigin(r)) {
		http.Error(w, "a drain comes from the monitor page itself", http.StatusForbidden)
		return
	}
	var req struct {
		Action string `json:"action"`
		Server string `json:"server"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || (req.Action != "drain" && req.Action != "undrain") {
		http.Error(w, `want {"action": "drain" or "undrain", "server": entry}`, http.StatusBadRequest)
		return
	}
	if a.o.Drain == nil {
		http.Error(w, "drains are not available", http.StatusServiceUnavailable)
		return
	}
	if err := a.o.Drain(req.Server, admin, req.Action == "drain"); err != nil {
		code := http.StatusServiceUnavailable // not kept now (a cluster electing): try again
		if errors.Is(err, ErrUnknownServer) {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	a.o.Logger.Info("server "+req.Action+"ed from the monitor page", "server", req.Server, "by", admin, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"server": req.Server, "drained": req.Action == "drain", "by": admin})
}

// sameOrigin reports whether r's Origin names the host it was sent to
// (through Apache, X-Forwarded-Host).
func sameOrigin(r *http.Request) bool {
	u, err := url.Parse(r.Header.Get("Origin"))
	if err != nil {
		return false
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
		host = strings.TrimSpace(strings.Split(fh, ",")[0])
	}
	return u.Host == host
}
