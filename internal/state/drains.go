package state

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/schema"
)

// Drainable is what drains set: the registry, as consumed here.
type Drainable interface {
	SetDrained(server, by string) bool
	Drains() map[string]string // every server known, with who drained it ("" for none)
}

// Drains is the cluster's drains from one place: kept in the state bucket
// across restarts, told to the other members at once (a member's watch of
// the bucket can lag seconds behind a cut), and asked again of a member
// with a steady majority after a heal (issue 30).
type Drains struct {
	kv     *KV
	nc     *nats.Conn
	subj   schema.Subjects
	reg    Drainable
	steady func() time.Duration // how long this member has held its majority
	log    *slog.Logger
}

// steadyMajority is how long a member must have reached its majority to
// answer for the drains: one back from a cut itself does not.
const steadyMajority = 3 * time.Second

// NewDrains keeps reg's drains in kv; with nc (a cluster member's own
// connection) it tells the other members of each drain and answers their
// asking for every drain while steady says it has held its majority a
// while.
func NewDrains(kv *KV, nc *nats.Conn, subj schema.Subjects, reg Drainable, steady func() time.Duration, log *slog.Logger) (*Drains, error) {
	d := &Drains{kv: kv, nc: nc, subj: subj, reg: reg, steady: steady, log: log}
	if nc == nil {
		return d, nil
	}
	if _, err := nc.Subscribe(subj.MemberDrains(), func(m *nats.Msg) {
		var dr Drain
		if json.Unmarshal(m.Data, &dr) != nil || dr.Server == "" || d.ServerOn(schema.Node(dr.Server)) != dr.Server {
			return
		}
		reg.SetDrained(dr.Server, dr.By)
	}); err != nil {
		return nil, err
	}
	_, err := nc.Subscribe(subj.MemberDrains()+".all", func(m *nats.Msg) {
		if d.steady() < steadyMajority || m.Reply == "" {
			return // this member may be one coming back itself
		}
		data, _ := json.Marshal(reg.Drains())
		_ = m.Respond(data)
	})
	return d, err
}

// ServerOn is the known server whose node is node, "" for none.
func (d *Drains) ServerOn(node string) string {
	for server := range d.reg.Drains() {
		if schema.Node(server) == node {
			return server
		}
	}
	return ""
}

// Set drains server on the word of by ("" lifts the drain) for every
// member and across restarts.
func (d *Drains) Set(server, by string) error {
	if err := d.kv.SetDrain(server, by); err != nil {
		return err
	}
	d.reg.SetDrained(server, by) // at once here; the other members at once too,
	if d.nc != nil {             // and again through the bucket's watch
		data, _ := json.Marshal(Drain{Server: server, By: by})
		if err := d.nc.Publish(d.subj.MemberDrains(), data); err != nil {
			d.log.Warn("the other members learn the drain from the state bucket only", "server", server, "error", err)
		}
	}
	return nil
}

// apply applies a drain kept in the state bucket (by "": lifted).
func (d *Drains) apply(node string, dr Drain) {
	if server := d.ServerOn(node); server != "" {
		d.reg.SetDrained(server, dr.By)
	}
}

// Watch applies the bucket's drains as they change until ctx ends; loaded
// is called once every kept drain is applied.
func (d *Drains) Watch(ctx context.Context, loaded func()) { d.kv.WatchDrains(ctx, d.apply, loaded) }

// Read applies every drain in this member's copy of the bucket once it has
// caught up with the stream's leader (KV.ReadDrains; self is this member's
// NATS server name).
func (d *Drains) Read(ctx context.Context, self string) error {
	return d.kv.ReadDrains(ctx, self, d.apply)
}

// Ask applies every drain as a member with a steady majority has them (its
// registry: the drains made while this one was cut off included); false
// when none answered. The state bucket right after a heal may still be
// this member's stale copy: 100 visitors went to a server drained
// meanwhile.
func (d *Drains) Ask() bool {
	if d.nc == nil {
		return false
	}
	m, err := d.nc.Request(d.subj.MemberDrains()+".all", nil, time.Second)
	if err != nil {
		return false
	}
	var drains map[string]string
	if json.Unmarshal(m.Data, &drains) != nil {
		return false
	}
	for server, by := range drains {
		if d.ServerOn(schema.Node(server)) == server {
			d.reg.SetDrained(server, by)
		}
	}
	return true
}
