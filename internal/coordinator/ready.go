package coordinator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Ready means ready (PROTOCOL §1, /readyz): a coordinator places visitors
// only once NATS is up, the drains it must honour are loaded (in a
// cluster, the cluster's), and every configured server has been heard from
// or one silence timeout has passed since the intake started. Before that /session
// answers as a busy farm and /readyz 503 says what is awaited: a restarted
// member sent 41 sessions to a drained server, and refused visitors while
// its servers were still unknown.

// drainWait is how long a start waits for the drains before it places
// anyway, saying so: a cluster without a quorum cannot give them, and
// visitors must not be refused for ever because of it.
const drainWait = 15 * time.Second

// readiness is what a start waits for.
type readiness struct {
	started time.Time
	// intake is when the heartbeat intake started (Unix ns; 0: not yet):
	// the silence window counts from it, not from the process's start,
	// which reads the state store first (about 3 s in a cluster: a
	// restarted member was ready having heard no server, issue 30).
	intake  atomic.Int64
	silence time.Duration // a never-heard server stops being awaited after this
	drains  atomic.Bool   // the drains kept are applied
	open    atomic.Bool   // the registry places
	opened  chan struct{} // closed once it does
	once    sync.Once
}

// silenceTimeout is how long a configured server may stay unheard from
// before a start stops waiting for it: heartbeatTimeout, else three of an
// agent's default 1 s intervals (a polled server's first poll, made at
// once, answers well within it).
func silenceTimeout(heartbeatTimeout time.Duration) time.Duration {
	if heartbeatTimeout > 0 {
		return heartbeatTimeout
	}
	return 3 * time.Second
}

// awaitReady opens the registry to placement once the coordinator is
// ready, or once drainWait has passed without the drains (an ERROR says
// what is missing). Reports and the drains' arrival open it at once
// (tryOpen): this loop is for the deadlines.
func (c *Coordinator) awaitReady(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !c.tryOpen() {
		if overdue, waited := c.drainsOverdue(); !c.ready.drains.Load() && overdue {
			c.log.Error("placing visitors without the drains: the state bucket did not give them", "waited", waited.Round(time.Millisecond),
				"members", c.nats.Members(), "why", "a cluster needs a majority of its members up to read its state",
				"consequence", "a drained server may get visitors until the drains arrive")
			c.open()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// noQuorumWait is how long a cluster member that never reached a majority
// waits for its drains before it places anyway.
const noQuorumWait = 30 * time.Second

// drainsOverdue says whether the drains are overdue: drainWait after the
// start alone, after the cluster formed (its majority met: members start
// one after another, and the cluster's state answers only then) in a
// cluster, noQuorumWait after the start in a cluster that never formed.
func (c *Coordinator) drainsOverdue() (bool, time.Duration) {
	waited := time.Since(c.ready.started)
	if !c.cfg.Clustered() {
		return waited >= drainWait, waited
	}
	if formed := c.quorum.FormedAt(); !formed.IsZero() {
		return time.Since(formed) >= drainWait, waited
	}
	return waited >= noQuorumWait, waited
}

// tryOpen opens the registry if the start is ready; it says whether the
// registry places. Cheap once open: it is called with every report.
func (c *Coordinator) tryOpen() bool {
	if c.ready.open.Load() {
		return true
	}
	if ok, _ := c.startReady(); !ok {
		return false
	}
	c.open()
	return true
}

func (c *Coordinator) open() {
	c.ready.once.Do(func() {
		c.regainMu.Lock()
		c.ready.open.Store(true)
		if c.regained == nil { // else quorumBack opens, once the drains are read
			c.reg.Open()
		}
		c.regainMu.Unlock()
		close(c.ready.opened)
		c.log.Info("ready: placing visitors", "after", time.Since(c.ready.started).Round(time.Millisecond),
			"unheard", len(c.reg.Unheard()))
	})
}

// awaitOpen waits until the registry places or ctx ends, and says which:
// /session holds a visitor that reaches a member not ready yet (a balancer
// sends visitors to a restarted member before its check sees it) rather
// than refusing it.
func (c *Coordinator) awaitOpen(ctx context.Context) bool {
	select {
	case <-c.ready.opened:
	case <-ctx.Done():
		return false
	}
	// A member back from a pause or a cut reaches its majority again a
	// moment later: the visitors that waited for it are held, not refused.
	regained := c.regaining()
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

// regaining is the channel closed once placement is back after a loss
// of the majority; nil when placement is not waiting for one.
func (c *Coordinator) regaining() <-chan struct{} {
	c.regainMu.Lock()
	defer c.regainMu.Unlock()
	return c.regained
}

// quorumLost closes placement (Quorum's onLost): a member without a
// majority cannot see the drains made meanwhile, nor write the line.
func (c *Coordinator) quorumLost() {
	c.regainMu.Lock()
	if c.regained == nil {
		c.regained = make(chan struct{})
	}
	c.reg.Gate()
	c.regainMu.Unlock()
	if n := c.nats.SendAgentsAway(true); n > 0 {
		c.log.Warn("agents sent to the other members: this one reaches no majority", "agents", n)
	}
}

// quorumBack reads the cluster's drains again, then places (Quorum's
// onBack): a drain made on the majority while this member was cut off
// applies before its next visitor.
func (c *Coordinator) quorumBack() {
	c.nats.SendAgentsAway(false)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for tries := 1; c.runCtx.Err() == nil; tries++ {
			// From a member that kept its majority; else, when none has
			// (the whole cluster is coming back), from the state bucket.
			ok := c.drains.Ask()
			if !ok && tries > 8 {
				ok = c.drains.Read(c.runCtx, c.nats.Name()) == nil
			}
			if ok && c.quorum.Current() {
				c.regainMu.Lock()
				if c.ready.open.Load() { // else the start's open() does
					c.reg.Open()
				}
				if c.regained != nil {
					close(c.regained)
					c.regained = nil
				}
				c.regainMu.Unlock()
				c.log.Info("the cluster's drains read again: placing visitors")
				return
			}
			select {
			case <-c.runCtx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
}

// awaitOpenOr waits until the registry places, or d has passed; false
// when ctx ended first. A process that replaces another (a reload) serves
// HTTP only then: the other answers meanwhile (Yield).
func (c *Coordinator) awaitOpenOr(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.ready.opened:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// startReady says whether the start has its state back, and what it
// awaits if not.
func (c *Coordinator) startReady() (bool, string) {
	if !c.ready.drains.Load() {
		return false, "waiting for the drains (the state bucket)"
	}
	unheard := c.reg.Unheard()
	if len(unheard) == 0 {
		return true, ""
	}
	at := c.ready.intake.Load()
	if at == 0 {
		return false, "waiting for the heartbeat intake to start"
	}
	if left := c.ready.silence - time.Since(time.Unix(0, at)); left > 0 {
		if len(unheard) > 3 {
			unheard = append(unheard[:3:3], "…")
		}
		return false, fmt.Sprintf("waiting to hear from %s, at most %s more", strings.Join(unheard, ", "), left.Round(100*time.Millisecond))
	}
	return true, ""
}

// isReady is /readyz: NATS up, the start's state back, and in a cluster
// a majority reached now.
func (c *Coordinator) isReady() (bool, string) {
	if !c.nats.Ready() || !c.pubConn.IsConnected() {
		return false, "the embedded NATS server is not up"
	}
	if !c.quorum.Current() {
		return false, fmt.Sprintf("no quorum: reaches %d of the cluster's %d members, %d needed", c.nats.Members(), c.members, c.quorum.Needed())
	}
	if c.regaining() != nil {
		return false, "quorum back: reading the cluster's drains"
	}
	if !c.ready.open.Load() {
		_, why := c.startReady()
		if why == "" {
			why = "opening"
		}
		return false, why
	}
	return true, ""
}
