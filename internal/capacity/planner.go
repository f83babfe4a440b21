package capacity

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/simgate/simgate/internal/history"
)

// Reader reads the recorded minutes since a time, every member's.
type Reader func(ctx context.Context, since time.Time) ([]history.Minute, error)

// PlannerOptions configures a Planner.
type PlannerOptions struct {
	Read   Reader
	Queue  Queue
	Logger *slog.Logger
	// Reps is how many replays each what-if row averages; 0: as many as
	// make 50,000 visitors replayed, 1 to 5 (a week of a busy farm is
	// replayed once: its counts are large enough).
	Reps int
	// Every is how long a what-if is reused (default an hour), unless the
	// demand grew by a tenth since; the plots are made anew each minute.
	Every time.Duration
	Now   func() time.Time
	// Made, when set, is told of each what-if once it is made.
	Made func(*WhatIfDoc)
}

// Planner serves the capacity document (/api/capacity, simgate.api.capacity):
// the day and week plots of the history and the what-if. The what-if is
// computed in the background, one at a time: a request never waits for it.
type Planner struct {
	o       PlannerOptions
	mu      sync.Mutex // guards the fields below (a leaf)
	doc     []byte
	brief   []byte // doc without its plots
	docAt   time.Time
	whatIf  *WhatIfDoc
	running bool
	reading bool // a document is being made: the others get the last one
}

// Doc is the capacity document.
type Doc struct {
	Generated time.Time       `json:"generated"`
	Day       []history.Point `json:"day"`  // 96 steps of 15 minutes
	Week      []history.Point `json:"week"` // 168 steps of an hour
	WhatIf    *WhatIfDoc      `json:"whatIf"`
	// Computing says a what-if is being made (the one shown, if any, is older).
	Computing bool   `json:"computing"`
	Error     string `json:"error,omitempty"`
}

// WhatIfDoc is one what-if: the window replayed, the model fitted, and
// one row per k.
type WhatIfDoc struct {
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Visitors   uint64    `json:"visitors"`
	Model      Model     `json:"model"`
	Seats      int       `json:"seatsPerServer"`
	MeanLength float64   `json:"meanSessionSeconds"`
	Interval   float64   `json:"heartbeatSeconds"`
	Rows       []Row     `json:"rows"`
	Error      string    `json:"error,omitempty"`
	Took       float64   `json:"tookSeconds"`
}

// NewPlanner returns a planner over o.Read.
func NewPlanner(o PlannerOptions) *Planner {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Every <= 0 {
		o.Every = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Planner{o: o}
}

// Document is the capacity document, at most a minute old (ctx bounds
// the read of the history); it starts a what-if when the last one is
// stale. brief is the document without its plots: the farm's NATS
// service answers it (a NATS answer holds 4 KB at most).
func (p *Planner) Document(ctx context.Context) (doc, brief []byte) {
	now := p.o.Now()
	p.mu.Lock()
	if p.doc != nil && (now.Sub(p.docAt) < time.Minute || p.reading) {
		doc, brief := p.doc, p.brief
		p.mu.Unlock()
		return doc, brief
	}
	p.reading = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.reading = false
		p.mu.Unlock()
	}()
	d := Doc{Generated: now.UTC()}
	raw, err := p.o.Read(ctx, now.Add(-history.Keep))
	if err != nil {
		d.Error = "the history cannot be read now: " + err.Error()
	}
	merged := history.Merge(raw)
	d.Day = history.Plot(merged, now, 24*time.Hour, 15*time.Minute)
	d.Week = history.Plot(merged, now, 7*24*time.Hour, time.Hour)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && !p.running && p.stale(merged, now) {
		p.running = true
		go p.compute(merged, now)
	}
	d.WhatIf, d.Computing = p.whatIf, p.running
	p.doc, _ = json.Marshal(d)
	d.Day, d.Week = nil, nil
	p.brief, _ = json.Marshal(d)
	p.docAt = now
	if p.running {
		p.docAt = time.Time{} // made anew as soon as the what-if is
	}
	return p.doc, p.brief
}

// stale reports whether the what-if should be made again; p.mu is held.
func (p *Planner) stale(merged []history.Minute, now time.Time) bool {
	w := p.whatIf
	if w == nil {
		return true
	}
	var visitors uint64
	for _, m := range merged {
		if !m.Start.Before(now.Add(-7 * 24 * time.Hour).Truncate(time.Minute)) {
			visitors += m.Visitors()
		}
	}
	return now.Sub(w.To) >= p.o.Every || float64(visitors) > 1.1*float64(w.Visitors)+10
}

// compute makes the what-if of the last week of merged.
func (p *Planner) compute(merged []history.Minute, now time.Time) {
	start := time.Now()
	w := &WhatIfDoc{From: now.Add(-7 * 24 * time.Hour).UTC(), To: now.UTC()}
	m, d, err := Fit(merged, w.From, now, p.o.Queue)
	if err != nil {
		w.Error = err.Error()
	} else {
		w.Model, w.Seats, w.Visitors = m, m.Seats(), d.Visitors()
		w.MeanLength, w.Interval = m.MeanLength.Seconds(), m.Interval.Seconds()
		w.From = d.Start.UTC()
		reps := p.o.Reps
		if reps <= 0 {
			reps = min(max(int(50000/max(d.Visitors(), 1)), 1), 5)
		}
		w.Rows = WhatIf(m, d, reps)
	}
	w.Took = time.Since(start).Seconds()
	p.o.Logger.Info("capacity what-if made", "visitors", w.Visitors, "servers", m.Servers, "took", time.Since(start).Round(time.Millisecond), "error", w.Error)
	p.mu.Lock()
	p.whatIf, p.running, p.docAt = w, false, time.Time{}
	p.mu.Unlock()
	if p.o.Made != nil {
		p.o.Made(w)
	}
}
