package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/httpapi"
	"github.com/simgate/simgate/internal/login"
	"github.com/simgate/simgate/internal/opsapi"
	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/version"
)

// startOps starts what operators use over NATS: the farm's service
// (simgate.api.*), the drains kept in the state bucket, and the farm
// bucket the leader keeps up to date.
func (c *Coordinator) startOps() error {
	var err error
	if c.apiConn, err = c.nats.ConnectAPI("simgate-coordinator-api"); err != nil {
		return fmt.Errorf("connecting the farm's NATS service: %w", err)
	}
	if _, err = opsapi.Start(opsapi.Options{Conn: c.apiConn, Subjects: schema.Subjects{Prefix: c.cfg.NATS.Prefix},
		Farm: opsFarm{c}, Admin: c.cfg.NATS.Users.AdminNamed, Version: version.String(), Logger: c.log}); err != nil {
		return fmt.Errorf("the farm's NATS service: %w", err)
	}
	c.spawn(func(ctx context.Context) { c.drains.Watch(ctx, c.ready.DrainsLoaded) })
	c.spawn(func(ctx context.Context) { c.serversKV.Keep(ctx, c.lead, c.farmEntries, c.log) })
	return nil
}

// drain drains (on) or undrains server for every member and across
// restarts, on the word of by.
func (c *Coordinator) drain(server, by string, on bool) error {
	if c.drains.ServerOn(schema.Node(server)) != server {
		return fmt.Errorf("%w: %w: %q", opsapi.ErrUnknownNode, httpapi.ErrUnknownServer, server)
	}
	if !on {
		by = ""
	}
	if err := c.drains.Set(server, by); err != nil {
		return fmt.Errorf("keeping the drain: %w", err)
	}
	return nil
}

// opsFarm is the coordinator as the farm's NATS service sees it.
type opsFarm struct{ c *Coordinator }

func (f opsFarm) ServersDoc() []byte { return f.c.api.ServersJSON() }

func (f opsFarm) CapacityDoc() []byte { return f.c.capacity.Document(f.c.runCtx, true) }

func (f opsFarm) Session(caller, url string) []byte {
	return f.c.api.SessionFor(alloc.Visitor{Addr: caller, URL: url})
}

func (f opsFarm) Drain(node, by string, on bool) (string, error) {
	server := f.c.drains.ServerOn(node)
	if server == "" {
		return "", opsapi.ErrUnknownNode
	}
	return server, f.c.drain(server, by, on)
}

// adminByPassword names the admin with this user name and password (HTTP
// Basic on the monitor page), "" for none; guard checks the password as
// NATS's logins are checked, addr is the client's address.
func adminByPassword(users config.NATSUsers, guard *login.Guard) func(addr, user, password string) string {
	return func(addr, user, password string) string {
		if guard.Check(addr, user, users.AdminPassword(user), password) != login.OK {
			return ""
		}
		return user
	}
}

// farmEntries is the registry's view as the farm bucket keeps it.
func (c *Coordinator) farmEntries() []schema.FarmEntry {
	views := c.reg.Snapshot()
	out := make([]schema.FarmEntry, len(views))
	for i, v := range views {
		e := schema.FarmEntry{Server: v.Server, State: v.State.String(), Reason: v.Reason, Since: v.Since.UTC().Format(time.RFC3339),
			Load: float64(int(v.Load*10)) / 10, Sessions: max(v.Sessions, 0), Max: v.MaxSessions, DrainedBy: v.DrainedBy, Probe: v.Note}
		if !v.LastSeen.IsZero() {
			e.LastSeen, e.Source = v.LastSeen.UTC().Format(time.RFC3339), v.Source.String()
		}
		out[i] = e
	}
	return out
}

// closeOps closes the service's connection.
func (c *Coordinator) closeOps() {
	if c.apiConn != nil {
		_ = c.apiConn.Drain()
	}
}
