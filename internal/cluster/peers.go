package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Peers tells which members this one hears now, from the beats every
// member publishes on the private subject schema.Subjects.MemberBeats a
// few times a second. A route's TCP connection outlives a cut network or
// a paused peer by its pings (about 3 s), and a resumed member still
// lists the routes it had: a member it has not heard for PeerSilence is
// not counted, whatever the routes say (issue 30: a cut-off member stayed
// ready, and kept leading, for ~10 s).
//
// A beat also says whether its member holds the JetStream meta leader's
// title (header LeadsHeader): a member resumed after a pause keeps the
// title for a moment after the others elected another, and RivalLeads
// lets it see that before it acts (issue 30: a frozen leader, resumed,
// mailed what the new leader mailed too). A member of an older release
// beats without the header and claims nothing.
type Peers struct {
	nc      *nats.Conn
	subject string
	self    string
	claims  func() bool // whether this member holds the title now; nil: never
	mu      sync.Mutex  // guards heard
	heard   map[string]heard
}

// heard is a member's latest beat: when, and whether it claimed the title.
type heard struct {
	at    time.Time
	leads bool
}

// LeadsHeader marks the beat of a member that holds the meta leader's
// title.
const LeadsHeader = "Simgate-Leads"

// BeatEvery is how often a member says it is there; PeerSilence is how
// long unheard makes a member not reached: several beats, so that a
// loaded machine's late beat is no loss, and within the 2 s a cut-off
// member has to say it on /readyz.
const (
	BeatEvery   = 200 * time.Millisecond
	PeerSilence = 1500 * time.Millisecond
)

// NewPeers listens for the other members' beats on subject over nc; self
// is this member's name (its NATS server name), claims whether it holds
// the meta leader's title (bus.Server.Leader), said in each beat.
func NewPeers(nc *nats.Conn, subject, self string, claims func() bool) (*Peers, error) {
	p := &Peers{nc: nc, subject: subject, self: self, claims: claims, heard: map[string]heard{}}
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		name := string(m.Data)
		if name == "" || name == self || len(name) > 256 {
			return
		}
		h := heard{at: time.Now(), leads: m.Header.Get(LeadsHeader) == "1"}
		p.mu.Lock()
		if _, ok := p.heard[name]; ok || len(p.heard) < maxPeers {
			p.heard[name] = h
		}
		p.mu.Unlock()
	})
	return p, err
}

// maxPeers bounds the names kept (a cluster has a handful of members).
const maxPeers = 64

// Run beats until ctx ends.
func (p *Peers) Run(ctx context.Context) {
	t := time.NewTicker(BeatEvery)
	defer t.Stop()
	for {
		m := nats.NewMsg(p.subject)
		m.Data = []byte(p.self)
		if p.claims != nil && p.claims() {
			m.Header.Set(LeadsHeader, "1")
		}
		_ = p.nc.PublishMsg(m)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reached is how many members this one heard within PeerSilence, itself
// included.
func (p *Peers) Reached() int { return p.reachedAt(time.Now()) }

func (p *Peers) reachedAt(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 1
	for _, h := range p.heard {
		if now.Sub(h.at) <= PeerSilence {
			n++
		}
	}
	return n
}

// QuietAfter is how long unheard makes a member quiet (Quiet): three
// beats, well before it stops counting for a majority (PeerSilence).
const QuietAfter = 3 * BeatEvery

// Quiet is the IDs, of routes (NATS server ID → name, bus.Server.Routes),
// whose members were heard once and not for QuietAfter: a cut or paused
// member whose agents are about to move (bus.IntakeOptions.Quiet).
func (p *Peers) Quiet(routes map[string]string) []string { return p.quietAt(routes, time.Now()) }

func (p *Peers) quietAt(routes map[string]string, now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id, name := range routes {
		if h, ok := p.heard[name]; ok && now.Sub(h.at) > QuietAfter {
			out = append(out, id)
		}
	}
	return out
}

// RivalLeads reports whether another member heard within PeerSilence
// claimed the meta leader's title in its latest beat. Two claims at once
// happen only while a title lingers (a pause, a cut just healed): neither
// acts until one is left, so a mail waits a moment rather than going twice.
func (p *Peers) RivalLeads() bool { return p.rivalAt(time.Now()) }

func (p *Peers) rivalAt(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.heard {
		if h.leads && now.Sub(h.at) <= PeerSilence {
			return true
		}
	}
	return false
}
