package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/schema"
)

// RunLocal runs the in-process agent of the coordinator's own machine
// (localAgent) for entry over nc until the returned stop, which waits for
// its leaving heartbeat and closes nc. Measured is false for the
// config-free start: a demonstration whose agent reports a fixed load of
// 0 % and is advisory (issue 32: a busy machine refused every visitor);
// true measures this machine as a real agent does.
func RunLocal(nc *nats.Conn, entry string, subj schema.Subjects, measured bool, log *slog.Logger) (stop func()) {
	var collectors []Collector
	if measured {
		collectors = DefaultCollectors(context.Background(), DefaultProbeURL(entry), DefaultProcessNames, log)
	} else {
		collectors = []Collector{Fixed{Load: 0}, NewProcesses("/proc", DefaultProcessNames),
			NewProbe(DefaultProbeURL(entry), 2*time.Second)}
		log.Info("config-free start: the in-process agent reports a fixed load of 0 % (a demonstration); a configuration file with localAgent measures this machine", "server", entry)
	}
	a := New(Options{
		Server:      entry,
		Interval:    time.Second,
		Collectors:  collectors,
		MaxSessions: 100,
		Subjects:    subj,
		Logger:      log.With("component", "local-agent"),
		Advisory:    !measured,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx, nc)
		nc.Close()
	}()
	log.Info("in-process agent started", "server", entry, "probe", DefaultProbeURL(entry), "advisory", !measured)
	return func() { cancel(); <-done }
}
