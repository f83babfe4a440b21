package coordinator

import (
	"context"
	"time"

	"github.com/simgate/simgate/internal/agent"
	"github.com/simgate/simgate/internal/schema"
)

// localAgent is the agent of the simulation server on the coordinator's own
// machine (the recommended setup), run in-process over an in-process NATS
// connection named after its entry.
type localAgent struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startLocalAgent(c *Coordinator, entry string) (*localAgent, error) {
	nc, err := c.nats.Connect(entry)
	if err != nil {
		return nil, err
	}
	// Without a configuration file the probe only advises, so that a first
	// run answers /session before any simulation server is installed.
	advisory := c.cfg.Path == ""
	var collectors []agent.Collector
	if !advisory {
		collectors = agent.DefaultCollectors(context.Background(), agent.DefaultProbeURL(entry), agent.DefaultProcessNames, c.log)
	} else {
		// A demonstration, not a measurement: a busy machine (a CI job, a
		// desktop) must not make the first visitor's farm full.
		collectors = []agent.Collector{agent.Fixed{Load: 0}, agent.NewProcesses("/proc", agent.DefaultProcessNames),
			agent.NewProbe(agent.DefaultProbeURL(entry), 2*time.Second)}
		c.log.Info("config-free start: the in-process agent reports a fixed load of 0 % (a demonstration); a configuration file with localAgent measures this machine", "server", entry)
	}
	a := agent.New(agent.Options{
		Server:      entry,
		Interval:    time.Second,
		Collectors:  collectors,
		MaxSessions: 100,
		Subjects:    schema.Subjects{Prefix: c.cfg.NATS.Prefix},
		Logger:      c.log.With("component", "local-agent"),
		Advisory:    advisory,
	})
	ctx, cancel := context.WithCancel(context.Background())
	l := &localAgent{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		_ = a.Run(ctx, nc)
		nc.Close()
	}()
	c.log.Info("in-process agent started", "server", entry, "probe", agent.DefaultProbeURL(entry), "advisory", advisory)
	return l, nil
}

func (l *localAgent) stop() {
	l.cancel()
	<-l.done
}
