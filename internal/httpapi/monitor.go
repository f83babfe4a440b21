package httpapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
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
