package notify

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// The original's subjects (PROTOCOL.md §3); administrators' filters match them.
const (
	SubjectDown      = "Simulation server not responding"
	SubjectUp        = "Simulation server working again"
	SubjectFull      = "Simulation server reached maximum load"
	SubjectAvailable = "Simulation server available again"
)

// PolicyOptions configures a Policy.
type PolicyOptions struct {
	Threshold  float64       // loadThreshold
	Hysteresis float64       // "available again" only below Threshold − Hysteresis
	HoldOff    time.Duration // after a bad mail, repeats wait this long and go as one digest
	MonitorURL string
	Send       func(subject, body string) // must not block (Queue.Enqueue)
	// Store keeps which servers are owed a good mail, and their hold-off
	// windows, across restarts and from one cluster leader to the next
	// (nil keeps them in memory): a coordinator in a crash loop must not
	// mail "not responding" again at each start.
	Store Store
	// Leader, when set, says whether this coordinator writes Store (every
	// member runs the policy on the same changes; the leader keeps it).
	Leader func() bool
	Logger *slog.Logger
}

// Policy turns state changes and loads into mails, once per real event:
// down/up and full/available each go through a hold-off window, and
// full/available through a hysteresis band, so flapping cannot storm.
type Policy struct {
	o       PolicyOptions
	mu      sync.Mutex
	servers map[string]*serverMail
	dirty   map[string]bool // servers whose pairs changed since Store was written
	loaded  bool            // Store's state has been read
}

type serverMail struct {
	down, full pair
	// upReports counts consecutive "up" reports: the first one after a
	// start (or a status other than up) is one sample, which feeds no mail.
	upReports int
}

// pair is one bad/good pair of mails (down/up, full/available).
type pair struct {
	owed     bool      // a bad mail went (or was held): the good one is owed
	window   time.Time // start of the hold-off window; zero: none
	sentGood bool      // the good mail of this window went
	held     int       // bad events held back in this window
	last     event     // the latest held event, for the digest
	lastBad  event     // the latest bad event, for the digest count text
}

type event struct {
	subject string
	bad     bool
	line    string
	detail  string
	at      time.Time
}

// NewPolicy builds a policy with the state Store kept, if it can be read
// now (else at a later Tick).
func NewPolicy(o PolicyOptions) *Policy {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	p := &Policy{o: o, servers: map[string]*serverMail{}, dirty: map[string]bool{}}
	p.load()
	return p
}

// load reads Store's state once; a server this run already has state for
// keeps its own.
func (p *Policy) load() {
	if p.o.Store == nil {
		p.loaded = true
		return
	}
	kept, err := p.o.Store.LoadHolds()
	if err != nil {
		p.o.Logger.Warn("mail hold-off state not readable yet; will retry", "error", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loaded = true
	for name, k := range kept {
		if _, ok := p.servers[name]; ok {
			continue
		}
		s := p.server(name)
		s.down.owed, s.down.window = k.DownOwed, k.DownWindow
		s.full.owed, s.full.window = k.FullOwed, k.FullWindow
	}
	if len(kept) > 0 {
		p.o.Logger.Info("mail hold-off state kept from an earlier run", "servers", len(kept))
	}
}

// Hold is one server's kept mail state.
type Hold struct {
	DownOwed   bool      `json:"downOwed,omitempty"`
	DownWindow time.Time `json:"downWindow,omitzero"`
	FullOwed   bool      `json:"fullOwed,omitempty"`
	FullWindow time.Time `json:"fullWindow,omitzero"`
}

// save writes the servers whose state changed, outside the lock, when
// this coordinator leads.
func (p *Policy) save() {
	if p.o.Store == nil || (p.o.Leader != nil && !p.o.Leader()) {
		return
	}
	p.mu.Lock()
	if len(p.dirty) == 0 {
		p.mu.Unlock()
		return
	}
	changed := make(map[string]Hold, len(p.dirty))
	for name := range p.dirty {
		s := p.servers[name]
		changed[name] = Hold{s.down.owed, s.down.window, s.full.owed, s.full.window}
	}
	p.dirty = map[string]bool{}
	p.mu.Unlock()
	if err := p.o.Store.SaveHolds(changed); err != nil {
		p.o.Logger.Error("cannot keep the mail hold-off state; will retry", "error", err)
		p.mu.Lock()
		for name := range changed {
			p.dirty[name] = true
		}
		p.mu.Unlock()
	}
}

func (p *Policy) server(name string) *serverMail {
	s := p.servers[name]
	if s == nil {
		s = &serverMail{}
		p.servers[name] = s
	}
	return s
}

// pct writes a load as the original's Python wrote a float: the shortest
// form that reads back, with ".0" on a whole number (30.0, 37.5, 95.16).
func pct(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}

// Change takes a registry state change.
func (p *Policy) Change(c alloc.Change) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.server(c.Server)
	alive := func(st alloc.State) bool { return st == alloc.Up || st == alloc.Full || st == alloc.Draining }
	switch {
	case c.To == alloc.Down && alive(c.From) && !c.Planned:
		p.bad(c.Server, &s.down, event{subject: SubjectDown, bad: true,
			line:   c.Server + " simulation server may be down, as it is not responding to the requests of the session server...",
			detail: "Why: " + c.Reason + ".", at: c.At})
	case alive(c.To) && (c.From == alloc.Down || c.From == alloc.Unknown) && s.down.owed:
		p.good(c.Server, &s.down, event{subject: SubjectUp,
			line: fmt.Sprintf("%s simulation server is up and running again (load = %s%%).", c.Server, pct(c.Load)),
			at:   c.At})
	}
}

// NotResponding reports a configured server that has not been up since
// start (never heard from, or its agent says its simulation server does
// not answer), unless a "not responding" mail already went for it.
func (p *Policy) NotResponding(server, why string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server(server).down.owed {
		return
	}
	p.bad(server, &p.server(server).down, event{subject: SubjectDown, bad: true,
		line:   server + " simulation server may be down, as it is not responding to the requests of the session server...",
		detail: "Why: " + why + ".", at: at})
}

// Load takes one report, for the full/available mails. Only a server whose
// agent says it is up feeds them (a draining, leaving or service-down
// server's load says nothing of its capacity), and not from its first
// sample, which covers too short a time to mean anything.
func (p *Policy) Load(server string, status alloc.Status, load float64, v alloc.Vector, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.server(server)
	if status != alloc.StatusUp {
		s.upReports = 0
		return
	}
	if s.upReports++; s.upReports < 2 {
		return
	}
	switch {
	case load >= p.o.Threshold && !s.full.owed:
		p.bad(server, &s.full, event{subject: SubjectFull, bad: true,
			line:   fmt.Sprintf("%s simulation server has reached maximum load (%s%%).", server, pct(load)),
			detail: "Saturated: " + v.Saturated() + ".", at: at})
	case load < p.o.Threshold-p.o.Hysteresis && s.full.owed:
		p.good(server, &s.full, event{subject: SubjectAvailable,
			line: fmt.Sprintf("%s simulation server is available again (load = %s%%).", server, pct(load)), at: at})
	}
}

func (p *Policy) bad(server string, pr *pair, e event) {
	p.dirty[server] = true
	pr.owed = true
	pr.lastBad = e
	if pr.window.IsZero() || !e.at.Before(pr.window.Add(p.o.HoldOff)) {
		pr.window, pr.sentGood, pr.held = e.at, false, 0
		p.mail(e, "")
		return
	}
	pr.held++
	pr.last = e
}

func (p *Policy) good(server string, pr *pair, e event) {
	p.dirty[server] = true
	pr.owed = false
	if pr.window.IsZero() || !e.at.Before(pr.window.Add(p.o.HoldOff)) {
		pr.window = time.Time{}
		p.mail(e, "")
		return
	}
	if !pr.sentGood && pr.held == 0 {
		pr.sentGood = true
		p.mail(e, "")
		return
	}
	pr.last = e
}

// Tick sends the digests of windows that have ended; call it every second or so.
// It also writes the hold-off state, when it changed, off the heartbeat path.
func (p *Policy) Tick(now time.Time) {
	if !p.loaded {
		p.load()
	}
	defer p.save()
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, s := range p.servers {
		for _, pr := range []*pair{&s.down, &s.full} {
			if pr.window.IsZero() || now.Before(pr.window.Add(p.o.HoldOff)) {
				continue
			}
			if pr.held == 0 {
				pr.window = time.Time{}
				continue
			}
			what := "went down"
			if pr == &s.full {
				what = "reached maximum load"
			}
			note := fmt.Sprintf("Flapping: it %s %d more times between %s and %s; those mails were held back and this one sums them up.",
				what, pr.held, stamp(pr.window), stamp(now))
			last := pr.last
			if pr.owed {
				last = pr.lastBad
			}
			p.mail(last, note)
			pr.held, pr.sentGood = 0, false
			pr.window = time.Time{}
			p.dirty[name] = true
			if pr.owed {
				pr.window = now // a bad mail just went: a new window
			}
		}
	}
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// mail writes the body as the original did (PROTOCOL §3): "Hello,", a blank
// line, the original's event line (administrators' filters match it), then
// simgate's why and when, the link to the monitor, a blank line and the
// signature.
func (p *Policy) mail(e event, note string) {
	var b strings.Builder
	b.WriteString("Hello,\n\n" + e.line + "\n")
	if e.detail != "" {
		b.WriteString(e.detail + "\n")
	}
	b.WriteString("When: " + stamp(e.at) + ".\n")
	if note != "" {
		b.WriteString(note + "\n")
	}
	b.WriteString("Check it at " + p.o.MonitorURL + "\n\n-Simulation Server\n")
	p.o.Send(e.subject, b.String())
}
