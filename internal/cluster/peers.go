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
type Peers struct {
	nc      *nats.Conn
	subject string
	self    string
	mu      sync.Mutex // guards heard
	heard   map[string]time.Time
}

// BeatEvery is how often a member says it is there; PeerSilence is how
// long unheard makes a member not reached: several beats, so that a
// loaded machine's late beat is no loss, and within the 2 s a cut-off
// member has to say it on /readyz.
const (
	BeatEvery   = 200 * time.Millisecond
	PeerSilence = 1500 * time.Millisecond
)

// NewPeers listens for the other members' beats on subject over nc; self
// is this member's name (its NATS server name).
func NewPeers(nc *nats.Conn, subject, self string) (*Peers, error) {
	p := &Peers{nc: nc, subject: subject, self: self, heard: map[string]time.Time{}}
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		name := string(m.Data)
		if name == "" || name == self || len(name) > 256 {
			return
		}
		now := time.Now()
		p.mu.Lock()
		if _, ok := p.heard[name]; ok || len(p.heard) < maxPeers {
			p.heard[name] = now
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
		_ = p.nc.Publish(p.subject, []byte(p.self))
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
	for _, at := range p.heard {
		if now.Sub(at) <= PeerSilence {
			n++
		}
	}
	return n
}
