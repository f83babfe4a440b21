package httpapi

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// feed is the farm's document (/api/servers), built and encoded at most once
// per monitorRefresh and shared as bytes by every reader: the /monitor
// WebSocket clients, /monitor?feed=json and /api/servers. However many read
// it, the registry is read and the document encoded once, so readers cannot
// starve the heartbeat intake (the review's 500 clients × 2,000 servers
// encoded one copy each, 4 times a second).
type feed struct {
	a        *API
	mu       sync.Mutex                 // guards the fields below; takes the registry's lock under it (Snapshot)
	prepared *websocket.PreparedMessage // doc as a WebSocket frame, built (and compressed) once for every client
	period   time.Duration              // how often it is rebuilt: longer for a large farm
	doc      []byte                     // the latest encoding, summary.now included
	bare     []byte                     // the same without summary.now: what a change is judged by
	built    time.Time
	version  uint64
	builds   uint64        // documents built, for tests
	changed  chan struct{} // closed and replaced when version moves
}

func newFeed(a *API) *feed {
	return &feed{a: a, changed: make(chan struct{}), period: monitorRefresh}
}

// current returns the document, rebuilt first if it is older than its
// period, and its version (which moves only when something but the time
// changed).
func (f *feed) current() ([]byte, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.freshLocked()
	return f.doc, f.version
}

// frame is current as a prepared WebSocket message.
func (f *feed) frame() (*websocket.PreparedMessage, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.freshLocked()
	return f.prepared, f.version
}

func (f *feed) freshLocked() {
	if f.doc == nil || time.Since(f.built) >= f.period {
		f.rebuildLocked()
	}
}

// bytesPerRefresh sets the refresh period: a document of this size or less
// is rebuilt every monitorRefresh, a larger one proportionally less often,
// up to maxRefresh, so that the bytes fanned out to live pages stay bounded
// (a 2,000-server farm's document is about 2 MB).
const (
	bytesPerRefresh = 256 << 10
	maxRefresh      = 2 * time.Second
)

// changes returns a channel closed at the next version.
func (f *feed) changes() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *feed) rebuildLocked() {
	f.builds++
	doc := f.a.serversDoc()
	now := doc.Summary.Now
	doc.Summary.Now = ""
	bare, err := json.Marshal(doc)
	if err != nil {
		f.a.o.Logger.Error("farm document not encoded", "error", err)
		return
	}
	// summary.now is the document's last field: splice the time in rather
	// than encode the whole farm twice.
	const tail = `"now":""}}`
	if bytes.HasSuffix(bare, []byte(tail)) {
		f.doc = append(append(bare[:len(bare)-len(tail):len(bare)-len(tail)], `"now":"`+now+`"}}`...), '\n')
	} else {
		doc.Summary.Now = now
		f.doc, _ = json.Marshal(doc)
	}
	f.built = time.Now()
	f.period = min(maxRefresh, max(monitorRefresh, time.Duration(len(bare)/bytesPerRefresh)*monitorRefresh))
	if !bytes.Equal(bare, f.bare) {
		f.bare = bare
		f.version++
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, f.doc)
		if err != nil {
			f.a.o.Logger.Error("farm document not framed", "error", err)
		}
		f.prepared = pm
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

// run rebuilds the document every monitorRefresh while live clients wait
// on it, so that they hear of changes; it stops with the API.
func (f *feed) run(live func() bool) {
	t := time.NewTicker(monitorRefresh)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if live() {
				f.current()
			}
		case <-f.a.closing:
			return
		}
	}
}
