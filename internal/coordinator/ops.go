package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/httpapi"
	"github.com/simgate/simgate/internal/login"
	"github.com/simgate/simgate/internal/opsapi"
	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/state"
	"github.com/simgate/simgate/internal/version"
)

// startOps starts what operators use over NATS: the farm's service
// (simgate.api.*), the drains kept in the state bucket, and the farm
// bucket the leader keeps up to date.
func (c *Coordinator) startOps(ctx context.Context) error {
	var err error
	if c.apiConn, err = c.nats.ConnectAPI("simgate-coordinator-api"); err != nil {
		return fmt.Errorf("connecting the farm's NATS service: %w", err)
	}
	if _, err = opsapi.Start(opsapi.Options{Conn: c.apiConn, Subjects: schema.Subjects{Prefix: c.cfg.NATS.Prefix},
		Farm: opsFarm{c}, Admin: adminByNATS(c.cfg.NATS.Users), Version: version.String(), Logger: c.log}); err != nil {
		return fmt.Errorf("the farm's NATS service: %w", err)
	}
	if c.cfg.Clustered() {
		if err := c.hearDrains(); err != nil {
			return fmt.Errorf("listening for the other members' drains: %w", err)
		}
	}
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.state.WatchDrains(ctx, c.applyDrain, func() { c.ready.drains.Store(true); c.tryOpen() })
	}()
	go func() { defer c.wg.Done(); c.publishFarm(ctx) }()
	return nil
}

// applyDrain applies a drain kept in the state bucket (by "": lifted).
func (c *Coordinator) applyDrain(node string, d state.Drain) {
	if server := c.serverOn(node); server != "" {
		c.reg.SetDrained(server, d.By)
	}
}

// serverOn is the configured (or reporting) server whose node is node.
func (c *Coordinator) serverOn(node string) string {
	for _, v := range c.reg.Snapshot() {
		if schema.Node(v.Server) == node {
			return v.Server
		}
	}
	return ""
}

// drain drains (on) or undrains server for every member and across
// restarts, on the word of by.
func (c *Coordinator) drain(server, by string, on bool) error {
	if c.serverOn(schema.Node(server)) != server {
		return fmt.Errorf("%w: %w: %q", opsapi.ErrUnknownNode, httpapi.ErrUnknownServer, server)
	}
	if !on {
		by = ""
	}
	if err := c.state.SetDrain(server, by); err != nil {
		return fmt.Errorf("keeping the drain: %w", err)
	}
	c.reg.SetDrained(server, by) // at once here; the other members at once too,
	if c.cfg.Clustered() {       // and again through the bucket's watch
		data, _ := json.Marshal(state.Drain{Server: server, By: by})
		if err := c.stateConn.Publish(c.subj.MemberDrains(), data); err != nil {
			c.log.Warn("the other members learn the drain from the state bucket only", "server", server, "error", err)
		}
	}
	return nil
}

// hearDrains applies the drains other members took (drain), as soon as
// they took them: a member's watch of the state bucket can lag seconds
// behind a cut. It also answers a member back from a cut that asks for
// every drain (askDrains), when this one has held a majority a while.
func (c *Coordinator) hearDrains() error {
	_, err := c.stateConn.Subscribe(c.subj.MemberDrains(), func(m *nats.Msg) {
		var d state.Drain
		if json.Unmarshal(m.Data, &d) != nil || d.Server == "" || c.serverOn(schema.Node(d.Server)) != d.Server {
			return
		}
		c.reg.SetDrained(d.Server, d.By)
	})
	if err != nil {
		return err
	}
	_, err = c.stateConn.Subscribe(c.subj.MemberDrains()+".all", func(m *nats.Msg) {
		if c.quorum.HeldFor() < steadyMajority || m.Reply == "" {
			return // this member may be one coming back itself
		}
		drains := map[string]string{}
		for _, v := range c.reg.Snapshot() {
			drains[v.Server] = v.DrainedBy
		}
		data, _ := json.Marshal(drains)
		_ = m.Respond(data)
	})
	return err
}

// steadyMajority is how long a member must have reached its majority to
// answer for the drains: one back from a cut itself does not.
const steadyMajority = 3 * time.Second

// askDrains applies every drain as a member with a steady majority has
// them (its registry: the drains made while this one was cut off
// included); false when none answered. The state bucket right after a
// heal may still be this member's stale copy: 100 visitors went to a
// server drained meanwhile.
func (c *Coordinator) askDrains() bool {
	m, err := c.stateConn.Request(c.subj.MemberDrains()+".all", nil, time.Second)
	if err != nil {
		return false
	}
	var drains map[string]string
	if json.Unmarshal(m.Data, &drains) != nil {
		return false
	}
	for server, by := range drains {
		if c.serverOn(schema.Node(server)) == server {
			c.reg.SetDrained(server, by)
		}
	}
	return true
}

// opsFarm is the coordinator as the farm's NATS service sees it.
type opsFarm struct{ c *Coordinator }

func (f opsFarm) ServersDoc() []byte { return f.c.api.ServersJSON() }

func (f opsFarm) Session(caller, url string) []byte {
	return f.c.api.SessionFor(alloc.Visitor{Addr: caller, URL: url})
}

func (f opsFarm) Drain(node, by string, on bool) (string, error) {
	server := f.c.serverOn(node)
	if server == "" {
		return "", opsapi.ErrUnknownNode
	}
	return server, f.c.drain(server, by, on)
}

// adminByNATS names the admin behind a NATS user (a user name, or an
// nkey), as Nats-Request-Info carries it.
func adminByNATS(users []config.NATSUser) func(string) string {
	return func(user string) string {
		for _, u := range users {
			if u.Role != bus.RoleAdmin {
				continue
			}
			switch {
			case u.User != "" && u.User == user && u.Password != "":
				return u.User
			case u.Nkey != "" && u.Nkey == user:
				if u.User != "" {
					return u.User
				}
				return "nkey " + u.Nkey
			}
		}
		return ""
	}
}

// adminByPassword names the admin with this user name and password (HTTP
// Basic on the monitor page), "" for none; guard checks the password as
// NATS's logins are checked, addr is the client's address.
func adminByPassword(users []config.NATSUser, guard *login.Guard) func(addr, user, password string) string {
	return func(addr, user, password string) string {
		want := ""
		for _, u := range users {
			if u.Role == bus.RoleAdmin && u.User == user && u.Password != "" {
				want = u.Password
			}
		}
		if guard.Check(addr, user, want, password) != login.OK {
			return ""
		}
		return user
	}
}

// farmEntry is one server's state in the farm bucket.
type farmEntry struct {
	Server    string  `json:"server"`
	State     string  `json:"state"`
	Reason    string  `json:"reason,omitempty"`
	Since     string  `json:"since"`
	Load      float64 `json:"load"`
	Sessions  int     `json:"sessions"`
	Max       int     `json:"maxSessions,omitempty"`
	LastSeen  string  `json:"lastSeen,omitempty"`
	Source    string  `json:"source,omitempty"`
	DrainedBy string  `json:"drainedBy,omitempty"`
	Probe     string  `json:"probe,omitempty"`
}

// durableSweep is how often the leader deletes durable consumers others
// made on the farm bucket (state.ServersKV.SweepDurables).
const durableSweep = 10 * time.Second

// publishFarm keeps the farm bucket up to date while this member leads:
// a server's key is written when its state, reason, drain or session count
// changes, when its load moved by 5 points, and at least every 30 s.
func (c *Coordinator) publishFarm(ctx context.Context) {
	type written struct {
		e  farmEntry
		at time.Time
	}
	last := map[string]written{}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var swept time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if !c.lead.Holds() {
				clear(last) // a new leader writes everything again
				continue
			}
			if now.Sub(swept) >= durableSweep {
				swept = now
				keep := map[string]bool{}
				for _, v := range c.reg.Snapshot() {
					keep[schema.Node(v.Server)] = true
				}
				if n, err := c.serversKV.Prune(keep); n > 0 {
					c.log.Info("servers no longer configured removed from the farm bucket", "bucket", schema.ServersBucket, "removed", n)
				} else if err != nil {
					if held, ok := c.serversErrs.Allow("prune", now); ok {
						c.log.Warn("farm bucket not pruned; will retry", "bucket", schema.ServersBucket, "error", err, "since_last_line", held)
					}
				}
				if n, err := c.serversKV.SweepDurables(); n > 0 || err != nil {
					if held, ok := c.serversErrs.Allow("durables", now); ok {
						c.log.Warn("durable consumers on the farm bucket deleted: watch it with nats kv watch, which needs none",
							"bucket", schema.ServersBucket, "deleted", n, "error", err, "since_last_line", held)
					}
				}
			}
			for _, v := range c.reg.Snapshot() {
				e := farmEntry{Server: v.Server, State: v.State.String(), Reason: v.Reason, Since: v.Since.UTC().Format(time.RFC3339),
					Load: float64(int(v.Load*10)) / 10, Sessions: max(v.Sessions, 0), Max: v.MaxSessions, DrainedBy: v.DrainedBy, Probe: v.Note}
				if !v.LastSeen.IsZero() {
					e.LastSeen, e.Source = v.LastSeen.UTC().Format(time.RFC3339), v.Source.String()
				}
				w, ok := last[v.Server]
				if ok && w.e.State == e.State && w.e.Reason == e.Reason && w.e.DrainedBy == e.DrainedBy &&
					w.e.Sessions == e.Sessions && w.e.Source == e.Source && math.Abs(w.e.Load-e.Load) < 5 && now.Sub(w.at) < 30*time.Second {
					continue
				}
				data, _ := json.Marshal(e)
				if !c.lead.Holds() {
					break // fenced: another member leads now, and writes
				}
				if err := c.serversKV.Put(v.Server, data); err != nil {
					if held, ok := c.serversErrs.Allow("put", now); ok {
						c.log.Warn("farm bucket not written; will retry", "bucket", schema.ServersBucket, "error", err, "since_last_line", held)
					}
					break
				}
				last[v.Server] = written{e, now}
			}
		}
	}
}

// closeOps closes the service's connection.
func (c *Coordinator) closeOps() {
	if c.apiConn != nil {
		_ = c.apiConn.Drain()
	}
}
