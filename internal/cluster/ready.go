package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Readiness is when a member places visitors, and what /readyz says
// (PROTOCOL §1). A start places only once NATS is up, the drains it must
// honour are loaded (in a cluster, the cluster's), and every configured
// server has been heard from or one silence timeout has passed since the
// intake started. Before that /session answers as a busy farm and /readyz
// 503 says what is awaited: a restarted member sent 41 sessions to a
// drained server, and refused visitors while its servers were still
// unknown. A member that loses its majority stops placing until it has it
// again and has read the cluster's drains (issue 30).
type Readiness struct {
	o       ReadinessOptions
	started time.Time
	// intake is when the heartbeat intake started (Unix ns; 0: not yet):
	// the silence window counts from it, not from the process's start,
	// which reads the state store first (about 3 s in a cluster: a
	// restarted member was ready having heard no server, issue 30).
	intake atomic.Int64
	drains atomic.Bool   // the drains kept are applied
	open   atomic.Bool   // the registry places
	opened chan struct{} // closed once it does
	once   sync.Once
	// regained is non-nil from a loss of the majority until placement is
	// back (the cluster's drains read again); visitors held meanwhile wait
	// on it. Guarded by mu, which gates and opens the registry under it
	// (LOCKS.md).
	mu       sync.Mutex
	regained chan struct{}
}

// Placer is the registry as readiness opens and gates it.
type Placer interface {
	Open()
	Gate()
	Unheard() []string // configured servers not heard from yet
}

// DrainSource gives the cluster's drains again after a loss of the
// majority (state.Drains).
type DrainSource interface {
	Ask() bool
	Read(ctx context.Context, self string) error
}

// Node is this member's NATS side as readiness asks it (bus.Server).
type Node interface {
	Name() string
	Members() int
	SendAgentsAway(away bool) int
}

// ReadinessOptions is what a Readiness follows.
type ReadinessOptions struct {
	Registry   Placer
	Drains     DrainSource
	Node       Node
	Up         func() bool // NATS up and this member's connections to it
	Quorum     *Quorum
	Clustered  bool
	Configured int // the cluster's members by configuration
	// HeartbeatTimeout is the configured silence timeout (0: three of an
	// agent's default 1 s intervals).
	HeartbeatTimeout time.Duration
	// Go runs f in the member's lifetime (its context, counted for stop).
	Go     func(f func(ctx context.Context))
	Logger *slog.Logger
}

// drainWait is how long a start waits for the drains before it places
// anyway, saying so: a cluster without a quorum cannot give them, and
// visitors must not be refused for ever because of it.
const drainWait = 15 * time.Second

// noQuorumWait is how long a cluster member that never reached a majority
// waits for its drains before it places anyway.
const noQuorumWait = 30 * time.Second

// NewReadiness starts the clock of a start now.
func NewReadiness(started time.Time) *Readiness {
	return &Readiness{started: started, opened: make(chan struct{})}
}

// Follow sets what r follows, once they exist.
func (r *Readiness) Follow(o ReadinessOptions) { r.o = o }

// Started is when the start began.
func (r *Readiness) Started() time.Time { return r.started }

// IntakeStarted starts the silence window.
func (r *Readiness) IntakeStarted() { r.intake.Store(time.Now().UnixNano()) }

// DrainsLoaded says the drains kept are applied.
func (r *Readiness) DrainsLoaded() { r.drains.Store(true); r.TryOpen() }

// Opened is closed once the registry places.
func (r *Readiness) Opened() <-chan struct{} { return r.opened }

// silence is how long a configured server may stay unheard from before a
// start stops waiting for it: the heartbeat timeout, else three of an
// agent's default 1 s intervals (a polled server's first poll, made at
// once, answers well within it).
func (r *Readiness) silence() time.Duration {
	if r.o.HeartbeatTimeout > 0 {
		return r.o.HeartbeatTimeout
	}
	return 3 * time.Second
}

// AwaitReady opens the registry to placement once the start is ready, or
// once drainWait has passed without the drains (an ERROR says what is
// missing). Reports and the drains' arrival open it at once (TryOpen):
// this loop is for the deadlines.
func (r *Readiness) AwaitReady(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !r.TryOpen() {
		if overdue, waited := r.drainsOverdue(); !r.drains.Load() && overdue {
			r.o.Logger.Error("placing visitors without the drains: the state bucket did not give them", "waited", waited.Round(time.Millisecond),
				"members", r.o.Node.Members(), "why", "a cluster needs a majority of its members up to read its state",
				"consequence", "a drained server may get visitors until the drains arrive")
			r.openNow()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drainsOverdue says whether the drains are overdue: drainWait after the
// start alone, after the cluster formed (its majority met: members start
// one after another, and the cluster's state answers only then) in a
// cluster, noQuorumWait after the start in a cluster that never formed.
func (r *Readiness) drainsOverdue() (bool, time.Duration) {
	waited := time.Since(r.started)
	if !r.o.Clustered {
		return waited >= drainWait, waited
	}
	if formed := r.o.Quorum.FormedAt(); !formed.IsZero() {
		return time.Since(formed) >= drainWait, waited
	}
	return waited >= noQuorumWait, waited
}

// TryOpen opens the registry if the start is ready; it says whether the
// registry places. Cheap once open: it is called with every report.
func (r *Readiness) TryOpen() bool {
	if r.open.Load() {
		return true
	}
	if ok, _ := r.startReady(); !ok {
		return false
	}
	r.openNow()
	return true
}

func (r *Readiness) openNow() {
	r.once.Do(func() {
		r.mu.Lock()
		r.open.Store(true)
		if r.regained == nil { // else QuorumBack opens, once the drains are read
			r.o.Registry.Open()
		}
		r.mu.Unlock()
		close(r.opened)
		r.o.Logger.Info("ready: placing visitors", "after", time.Since(r.started).Round(time.Millisecond),
			"unheard", len(r.o.Registry.Unheard()))
	})
}

// AwaitOpen waits until the registry places or ctx ends, and says which:
// /session holds a visitor that reaches a member not ready yet (a balancer
// sends visitors to a restarted member before its check sees it) rather
// than refusing it.
func (r *Readiness) AwaitOpen(ctx context.Context) bool {
	select {
	case <-r.opened:
	case <-ctx.Done():
		return false
	}
	// A member back from a pause or a cut reaches its majority again a
	// moment later: the visitors that waited for it are held, not refused.
	regained := r.regaining()
	if regained == nil {
		return true
	}
	select {
	case <-regained:
		return true
	case <-ctx.Done():
		return false
	}
}

// AwaitOpenOr waits until the registry places, or d has passed; false
// when ctx ended first. A process that replaces another (a reload) serves
// HTTP only then: the other answers meanwhile.
func (r *Readiness) AwaitOpenOr(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.opened:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// regaining is the channel closed once placement is back after a loss
// of the majority; nil when placement is not waiting for one.
func (r *Readiness) regaining() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.regained
}

// QuorumLost closes placement (Quorum's onLost): a member without a
// majority cannot see the drains made meanwhile, nor write the line.
func (r *Readiness) QuorumLost() {
	r.mu.Lock()
	if r.regained == nil {
		r.regained = make(chan struct{})
	}
	r.o.Registry.Gate()
	r.mu.Unlock()
	if n := r.o.Node.SendAgentsAway(true); n > 0 {
		r.o.Logger.Warn("agents sent to the other members: this one reaches no majority", "agents", n)
	}
}

// QuorumBack reads the cluster's drains again, then places (Quorum's
// onBack): a drain made on the majority while this member was cut off
// applies before its next visitor.
func (r *Readiness) QuorumBack() {
	r.o.Node.SendAgentsAway(false)
	r.o.Go(func(ctx context.Context) {
		for tries := 1; ctx.Err() == nil; tries++ {
			// From a member that kept its majority; else, when none has
			// (the whole cluster is coming back), from the state bucket.
			ok := r.o.Drains.Ask()
			if !ok && tries > 8 {
				ok = r.o.Drains.Read(ctx, r.o.Node.Name()) == nil
			}
			if ok && r.o.Quorum.Current() {
				r.mu.Lock()
				if r.open.Load() { // else the start's opening does
					r.o.Registry.Open()
				}
				if r.regained != nil {
					close(r.regained)
					r.regained = nil
				}
				r.mu.Unlock()
				r.o.Logger.Info("the cluster's drains read again: placing visitors")
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
}

// startReady says whether the start has its state back, and what it
// awaits if not.
func (r *Readiness) startReady() (bool, string) {
	if !r.drains.Load() {
		return false, "waiting for the drains (the state bucket)"
	}
	unheard := r.o.Registry.Unheard()
	if len(unheard) == 0 {
		return true, ""
	}
	at := r.intake.Load()
	if at == 0 {
		return false, "waiting for the heartbeat intake to start"
	}
	if left := r.silence() - time.Since(time.Unix(0, at)); left > 0 {
		if len(unheard) > 3 {
			unheard = append(unheard[:3:3], "…")
		}
		return false, fmt.Sprintf("waiting to hear from %s, at most %s more", strings.Join(unheard, ", "), left.Round(100*time.Millisecond))
	}
	return true, ""
}

// Ready is /readyz: NATS up, the start's state back, and in a cluster a
// majority reached now.
func (r *Readiness) Ready() (bool, string) {
	if !r.o.Up() {
		return false, "the embedded NATS server is not up"
	}
	if !r.o.Quorum.Current() {
		return false, fmt.Sprintf("no quorum: reaches %d of the cluster's %d members, %d needed", r.o.Node.Members(), r.o.Configured, r.o.Quorum.Needed())
	}
	if r.regaining() != nil {
		return false, "quorum back: reading the cluster's drains"
	}
	if !r.open.Load() {
		_, why := r.startReady()
		if why == "" {
			why = "opening"
		}
		return false, why
	}
	return true, ""
}
