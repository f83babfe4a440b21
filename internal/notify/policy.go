package notify

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simgate/simgate/internal/domain"
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
	// Fence, when set, says whether this coordinator tells the
	// administrator and writes Store (every member runs the policy on the
	// same changes; the cluster's leader mails and keeps it). nil: a lone
	// coordinator, which always does.
	Fence  Fence
	Logger *slog.Logger
}

// Policy turns state changes and loads into mails, once per real event:
// down/up and full/available each go through a hold-off window, and
// full/available through a hysteresis band, so flapping cannot storm.
//
// Notifications are level-triggered: the pairs say what the administrator
// was told (kept in Store, replicated in a cluster), and only the leader
// changes them, as it mails. A member that takes the lead reads them and
// mails the difference between them and what is true now (TakeLead): a
// server that failed while no member led is mailed once, after the
// election, and a "working again" only follows a "not responding" sent.
type Policy struct {
	o PolicyOptions
	// mu guards servers, dirty, loaded and leading. Lock order: the
	// registry's locks are never taken under it (LOCKS.md).
	mu      sync.Mutex
	servers map[string]*serverMail
	dirty   map[string]bool // servers whose pairs changed since Store was written
	loaded  bool            // Store's state has been read
	leading bool            // this policy tells the administrator (TakeLead)
	wake    chan struct{}   // a pair changed: save soon (Saves)
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
	p := &Policy{o: o, servers: map[string]*serverMail{}, dirty: map[string]bool{}, wake: make(chan struct{}, 1)}
	p.leading = o.Fence == nil
	p.load()
	return p
}

// Saves is signalled when the told state changed: the caller writes it
// (Tick) at once, rather than at the next tick, so that a leader that dies
// right after a mail leaves its successor knowing of it.
func (p *Policy) Saves() <-chan struct{} { return p.wake }

// tells reports whether this policy tells the administrator now: it leads
// and has read what the last leader told. p.mu is held.
func (p *Policy) tells() bool {
	return p.leading && p.loaded && (p.o.Fence == nil || p.o.Fence.Holds())
}

// load reads Store's state once; a server this run already has state for
// keeps its own.
func (p *Policy) load() {
	if p.o.Store == nil {
		p.mu.Lock()
		p.loaded = true
		p.mu.Unlock()
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
	// What the administrator was told is the Store's: what this member
	// saw while another led (or none did) was never told.
	for _, s := range p.servers {
		s.down, s.full = pair{}, pair{}
	}
	for name, k := range kept {
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
	// Fenced: checked right before the write; a member that lost the lead
	// writes nothing more.
	if p.o.Store == nil || (p.o.Fence != nil && !p.o.Fence.Holds()) {
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
func (p *Policy) Change(c domain.Change) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tells() {
		return // the leader tells; a new one mails the difference (TakeLead)
	}
	s := p.server(c.Server)
	alive := func(st domain.State) bool { return st == domain.Up || st == domain.Full || st == domain.Draining }
	switch {
	case c.To == domain.Down && alive(c.From) && !c.Planned:
		p.bad(c.Server, &s.down, event{subject: SubjectDown, bad: true,
			line:   c.Server + " simulation server may be down, as it is not responding to the requests of the session server...",
			detail: "Why: " + c.Reason + ".", at: c.At})
	case alive(c.To) && (c.From == domain.Down || c.From == domain.Unknown) && s.down.owed:
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
	if !p.tells() || p.server(server).down.owed {
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
func (p *Policy) Load(server string, status domain.Status, load float64, v domain.Vector, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.server(server)
	if status != domain.StatusUp {
		s.upReports = 0
		return
	}
	if s.upReports++; s.upReports < 2 || !p.tells() {
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
	p.changed(server)
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
	p.changed(server)
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

// changed marks server's pairs to be saved, soon. p.mu is held.
func (p *Policy) changed(server string) {
	p.dirty[server] = true
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Now is a server's state as the registry sees it now, for TakeLead.
type Now struct {
	Server  string
	State   domain.State
	Reason  string
	Load    float64
	Leaving bool // its agent's last word was a clean stop
	Heard   bool // a report came since start
	// ServiceDown: its agent's last word was that the simulation server
	// does not answer (PROTOCOL §2 status "down").
	ServiceDown bool
}

// TakeLead is called when this coordinator has become the one that tells
// (a single coordinator at start, a cluster member once elected): it reads
// what the last leader told, then mails the difference with what is true
// now. It reports false when Store cannot be read yet (call it again).
func (p *Policy) TakeLead(now []Now, at time.Time) bool {
	p.mu.Lock()
	p.loaded = p.o.Store == nil
	p.mu.Unlock()
	p.load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		return false
	}
	p.leading = true
	told := 0
	for _, n := range now {
		s := p.server(n.Server)
		alive := n.State == domain.Up || n.State == domain.Full || n.State == domain.Draining
		switch {
		case n.State == domain.Down && n.Heard && !n.Leaving && !s.down.owed:
			p.bad(n.Server, &s.down, event{subject: SubjectDown, bad: true,
				line:   n.Server + " simulation server may be down, as it is not responding to the requests of the session server...",
				detail: "Why: " + n.Reason + " (seen by the coordinator that took over the notifications).", at: at})
			told++
		case alive && s.down.owed:
			p.good(n.Server, &s.down, event{subject: SubjectUp,
				line: fmt.Sprintf("%s simulation server is up and running again (load = %s%%).", n.Server, pct(n.Load)), at: at})
			told++
		}
	}
	p.o.Logger.Info("this coordinator tells the administrator now", "servers", len(now), "mailed_differences", told)
	return true
}

// LeadLost is called when this coordinator no longer leads: it changes
// the told state no more until it leads again (TakeLead).
func (p *Policy) LeadLost() {
	p.mu.Lock()
	p.leading = false
	p.mu.Unlock()
}

// Save writes the told state now, if this coordinator leads (Saves).
func (p *Policy) Save() { p.save() }

// Tick sends the digests of windows that have ended; call it every second or so.
// It also writes the hold-off state, when it changed, off the heartbeat path.
func (p *Policy) Tick(now time.Time) {
	p.mu.Lock()
	loaded := p.loaded
	p.mu.Unlock()
	if !loaded {
		p.load()
	}
	defer p.save()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tells() {
		return
	}
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
			p.changed(name)
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
