package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/domain"
	"github.com/simgate/simgate/internal/schema"
)

// Options configures an Agent.
type Options struct {
	Server      string        // the simulationServers entry this agent speaks for
	Interval    time.Duration // between heartbeats
	Collectors  []Collector
	MaxSessions int // capacity of the simulation server (its maxConnections)
	Subjects    schema.Subjects
	Logger      *slog.Logger
	// DrainFile, when set, puts the server in draining while the file exists.
	DrainFile string
	// SimulationConfig, when set, is the simulation server's own configuration: its
	// heartbeats then carry its sharing policy (PROTOCOL §1.1).
	SimulationConfig *SimulationConfig
	// Advisory reports a failing probe in the heartbeat's probe field without
	// marking the server service-down: for a first run with no simulation
	// server yet, never for production.
	Advisory bool
}

// Agent samples its machine every interval and publishes a heartbeat.
type Agent struct {
	o        Options
	draining atomic.Bool
	fileMu   sync.Mutex // guards fileSeen (a leaf)
	fileSeen *bool      // whether the drain file existed at the last look; nil before the first
	win      window
	failing  map[string]string // collector → last error logged
	service  string            // last probe error logged, "" when answering
	gpuNoted bool
	lastHB   atomic.Pointer[schema.Heartbeat] // for the leaving message
}

// New builds an agent.
func New(o Options) *Agent {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Subjects.Prefix == "" {
		o.Subjects.Prefix = schema.DefaultPrefix
	}
	return &Agent{o: o, failing: map[string]string{}}
}

// SetDraining puts the server in or out of draining.
func (a *Agent) SetDraining(on bool) {
	if a.draining.Swap(on) != on {
		a.o.Logger.Info("draining changed", "server", a.o.Server, "draining", on)
	}
}

// Draining reports whether the server is draining. The signals and the
// drain file are one state, and the latest event wins: SetDraining (USR1,
// USR2) sets it at once; the drain file appearing or going away, seen here,
// sets it too; a file present at start drains. So USR2 undrains while the
// file exists, until the file changes again.
func (a *Agent) Draining() bool {
	if a.o.DrainFile != "" {
		_, err := os.Stat(a.o.DrainFile)
		present := err == nil
		a.fileMu.Lock()
		changed := a.fileSeen != nil && *a.fileSeen != present
		first := a.fileSeen == nil
		a.fileSeen = &present
		a.fileMu.Unlock()
		if changed || (first && present) {
			verb := "removed"
			if present {
				verb = "created"
			}
			a.o.Logger.Info("drain file "+verb, "file", a.o.DrainFile)
			a.SetDraining(present)
		}
	}
	return a.draining.Load()
}

// FirstSample is how long the agent samples before its first heartbeat.
const FirstSample = 250 * time.Millisecond

// Run publishes heartbeats on nc until ctx ends, then a leaving heartbeat.
func (a *Agent) Run(ctx context.Context, nc *nats.Conn) error {
	subject := a.o.Subjects.Load(a.o.Server)
	// The first heartbeat goes after a short first sample (FirstSample), so
	// that a coordinator started beside the agent places from its first
	// answer: long enough for a CPU sample (25 clock ticks a core), not the
	// milliseconds since the collectors started, which read 0 % or 100 %
	// and made a full/available pair at start. Then one every interval.
	first := time.NewTimer(min(a.o.Interval, FirstSample))
	defer first.Stop()
	tick := first.C
	var t *time.Ticker
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	checked := false
	for {
		select {
		case <-ctx.Done():
			a.leave(nc, subject)
			return nil
		case <-tick:
		}
		if t == nil {
			t = time.NewTicker(a.o.Interval)
			tick = t.C
		}
		hb := a.Beat(ctx)
		if ctx.Err() != nil {
			a.leave(nc, subject)
			return nil
		}
		if !checked && nc.IsConnected() {
			checked = true
			a.check(nc, subject, hb) // the first heartbeat asks whether the coordinator takes it
			continue
		}
		a.publish(nc, subject, hb)
	}
}

// leave sends the leaving heartbeat as a request and waits for the
// coordinator's acknowledgement, so that the heartbeat is applied before
// this connection closes: the close advisory travels on another connection
// and would otherwise be able to overtake it and read as a failure.
// A coordinator that does not answer (an older one) gets a flushed publish.
func (a *Agent) leave(nc *nats.Conn, subject string) {
	if !nc.IsConnected() {
		return
	}
	hb := a.last()
	hb.Status = schema.StatusLeaving
	data, err := hb.Encode()
	if err != nil {
		a.o.Logger.Warn("leaving heartbeat not built", "server", a.o.Server, "error", err)
		return
	}
	if _, err = nc.Request(subject, data, 2*time.Second); err == nil {
		a.o.Logger.Info("leaving heartbeat acknowledged", "server", a.o.Server)
		return
	}
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
		a.o.Logger.Warn("leaving heartbeat may not have reached the coordinator", "server", a.o.Server, "error", err)
		return
	}
	// Nobody acknowledges: the request itself was published; make sure it left.
	if err := nc.FlushTimeout(time.Second); err != nil {
		a.o.Logger.Warn("leaving heartbeat may not have reached the coordinator", "server", a.o.Server, "error", err)
		return
	}
	a.o.Logger.Info("leaving heartbeat sent (not acknowledged)", "server", a.o.Server, "reason", err)
}

// check sends hb as a request, without waiting: the coordinator's
// acknowledgement says whether it applied the heartbeat or dropped it, and
// a drop is said once, clearly, with what to change. A coordinator that
// does not answer is not an error: the heartbeats go on either way.
func (a *Agent) check(nc *nats.Conn, subject string, hb schema.Heartbeat) {
	data, err := hb.Encode()
	if err != nil {
		return
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		a.publish(nc, subject, hb)
		return
	}
	if err := nc.PublishRequest(subject, inbox, data); err != nil {
		_ = sub.Unsubscribe()
		return
	}
	go func() {
		defer func() { _ = sub.Unsubscribe() }()
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			return
		}
		ack := string(m.Data)
		reason, dropped := strings.CutPrefix(ack, "dropped: ")
		if !dropped {
			a.o.Logger.Info("the coordinator takes this agent's heartbeats", "server", a.o.Server)
			return
		}
		hint := "see the coordinator's log"
		if reason == schema.DropUnknown {
			hint = fmt.Sprintf("-server must be written exactly as in the coordinator's simulationServers (is it %q?)", otherSpelling(a.o.Server))
		}
		a.o.Logger.Error("the coordinator drops this agent's heartbeats", "server", a.o.Server, "reason", reason, "next", hint)
	}()
}

// otherSpelling is entry with its port separator swapped: host/2000 and
// host:2000 are different entries to the coordinator.
func otherSpelling(entry string) string {
	i := strings.LastIndexAny(entry, "/:")
	if i < 0 {
		return entry
	}
	sep := "/"
	if entry[i] == '/' {
		sep = ":"
	}
	return entry[:i] + sep + entry[i+1:]
}

func (a *Agent) publish(nc *nats.Conn, subject string, hb schema.Heartbeat) {
	if !nc.IsConnected() {
		return // a stale heartbeat replayed after a reconnect would mislead placement
	}
	data, err := hb.Encode()
	if err == nil {
		err = nc.Publish(subject, data)
	}
	if err != nil {
		a.o.Logger.Warn("heartbeat not published", "server", a.o.Server, "error", err)
	}
}

// Beat takes one sample of every collector and builds the heartbeat.
func (a *Agent) Beat(ctx context.Context) schema.Heartbeat {
	var r Reading
	probeTimeout := min(a.o.Interval/2, 2*time.Second)
	for _, c := range a.o.Collectors {
		cctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := c.Collect(cctx, &r)
		cancel()
		a.noteCollector(c.Name(), err)
	}
	load := a.win.add(r)
	instant := round(sampleLoad(r))
	hb := schema.Heartbeat{
		InstantLoad: &instant,
		V:           1, Server: a.o.Server, Status: schema.StatusUp, Load: round(load),
		Vector: domain.Vector{CPU: roundp(r.CPU), Memory: roundp(r.Memory), Swap: roundp(r.Swap),
			GPU: roundp(r.GPU), GPUMemory: roundp(r.GPUMemory), VRAM: roundp(r.VRAM)},
		Sessions: r.Sessions, Interval: a.o.Interval.Seconds(),
		Time: time.Now().UTC().Format(time.RFC3339Nano),
	}
	if a.o.MaxSessions > 0 {
		hb.MaxSessions = ptr(a.o.MaxSessions)
	}
	if a.o.SimulationConfig != nil {
		hb.Sharing = a.o.SimulationConfig.Sharing()
	}
	a.noteService(r)
	if r.ServiceErr != nil {
		hb.Probe = r.ServiceErr.Error()
	}
	switch {
	case r.ServiceErr != nil && !a.o.Advisory:
		hb.Status = schema.StatusServiceDown
	case a.Draining():
		hb.Status = schema.StatusDraining
	}
	a.lastHB.Store(&hb)
	return hb
}

func (a *Agent) last() schema.Heartbeat {
	if p := a.lastHB.Load(); p != nil {
		return *p
	}
	return schema.Heartbeat{V: 1, Server: a.o.Server, Interval: a.o.Interval.Seconds(),
		Time: time.Now().UTC().Format(time.RFC3339Nano)}
}

// noteCollector logs a collector's failure once, and its recovery.
func (a *Agent) noteCollector(name string, err error) {
	prev, failed := a.failing[name]
	switch {
	case err == nil && failed:
		delete(a.failing, name)
		a.o.Logger.Info("collector works again", "collector", name)
	case errors.Is(err, errGPUPending): // not known yet: nothing to say
	case err != nil && errors.Is(err, ErrNoGPU):
		if !a.gpuNoted {
			a.gpuNoted = true
			a.o.Logger.Info("no GPU measured: gpu, gpuMemory and vram are left out of heartbeats", "reason", err)
		}
	case err != nil && (!failed || prev != err.Error()):
		a.failing[name] = err.Error()
		a.o.Logger.Warn("collector failed", "collector", name, "error", err)
	}
}

// noteService logs when the simulation server stops or starts answering.
func (a *Agent) noteService(r Reading) {
	if !r.ServiceChecked {
		return
	}
	msg := ""
	if r.ServiceErr != nil {
		msg = r.ServiceErr.Error()
	}
	if msg == a.service {
		return
	}
	if msg != "" {
		hint := "heartbeats say service-down until it answers"
		if a.o.Advisory {
			hint = "start a Webots simulation server there; until then placement still uses this server (the configuration-free coordinator's probe only advises)"
		}
		a.o.Logger.Warn("simulation server does not answer", "server", a.o.Server, "error", msg, "next", hint)
	} else {
		a.o.Logger.Info("simulation server answers", "server", a.o.Server)
	}
	a.service = msg
}

func round(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

func roundp(p *float64) *float64 {
	if p == nil {
		return nil
	}
	return ptr(round(*p))
}
