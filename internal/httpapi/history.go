package httpapi

import (
	"sync"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// The monitor's load history: one point per server every historyStep, for
// historyLen points (10 minutes).
const (
	historyStep = 5 * time.Second
	historyLen  = 120
)

type history struct {
	mu    sync.Mutex // guards rings and waits (a leaf)
	rings map[string][]float64
	// waits is the waiting room's first visitor's wait (seconds) at each
	// point, for the monitor's plot of the line.
	waits []float64
}

func newHistory() *history { return &history{rings: map[string][]float64{}} }

// record appends one point per server (a server never heard from gets
// none) and one of the waiting room's oldest wait.
func (h *history) record(a *API) {
	views := a.o.Registry.Snapshot()
	oldest := -1.0 // no waiting room: a gap
	if a.o.Line != nil {
		_, o := a.o.Line.Stats()
		oldest = o.Seconds()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waits = append(h.waits, oldest); len(h.waits) > historyLen {
		h.waits = append(h.waits[:0], h.waits[len(h.waits)-historyLen:]...)
	}
	for _, v := range views {
		if v.LastSeen.IsZero() {
			continue
		}
		r := append(h.rings[v.Server], historyPoint(v))
		if len(r) > historyLen {
			r = append(r[:0], r[len(r)-historyLen:]...)
		}
		h.rings[v.Server] = r
	}
}

// historyPoint is a server's load in the chart: -1, a gap, while it is down.
func historyPoint(v alloc.View) float64 {
	if v.State == alloc.Down {
		return -1
	}
	return v.Load
}

// waited copies the waiting room's ring.
func (h *history) waited() []float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]float64{}, h.waits...)
}

// get copies every ring.
func (h *history) get() map[string][]float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]float64, len(h.rings))
	for k, v := range h.rings {
		out[k] = append([]float64(nil), v...)
	}
	return out
}

// runHistory samples the registry until the API closes.
func (a *API) runHistory() {
	t := time.NewTicker(historyStep)
	defer t.Stop()
	a.history.record(a)
	for {
		select {
		case <-t.C:
			a.history.record(a)
		case <-a.closing:
			return
		}
	}
}
