package loadtest

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/schema"
)

// ServerNames are the n simulated servers' entries.
func ServerNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("sim%05d.load.test/2000", i)
	}
	return out
}

// RunAgents is the helper process: n simulated agents, perConn to a NATS
// connection, each heartbeating every interval (spread evenly over it) with
// a load wandering in [5, 60). It writes "ready" on ready once every
// connection is open. It reads commands on stdin: "full" makes every
// server report 99 at once and from then on, "free" undoes it; it returns
// when stdin closes (its parent went away).
func RunAgents(natsURL string, n, perConn int, interval time.Duration, stdin io.Reader, ready io.Writer, log *slog.Logger) error {
	perConn = max(perConn, 1)
	// One connection per perConn agents: real agents hold one connection
	// each, and the server's cost per heartbeat grows with the connections
	// it reads from; 10,000 sockets in one helper would be too many.
	conns := make([]*nats.Conn, (n+perConn-1)/perConn)
	for i := range conns {
		nc, err := nats.Connect(natsURL, nats.Name(fmt.Sprintf("simgate-loadtest-agents-%d", i)), nats.MaxReconnects(-1))
		if err != nil {
			return err
		}
		defer nc.Close()
		conns[i] = nc
	}
	if _, err := fmt.Fprintln(ready, "ready"); err != nil {
		return err
	}
	subj := schema.Subjects{Prefix: schema.DefaultPrefix}
	names := ServerNames(n)
	subjects := make([]string, n)
	loads := make([]float64, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i, name := range names {
		subjects[i] = subj.Load(name)
		loads[i] = 5 + rng.Float64()*55
	}
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			cmds <- strings.TrimSpace(sc.Text())
		}
		close(cmds)
	}()
	full := false
	send := func(i int) {
		load := loads[i]
		if full {
			load = 99
		} else {
			loads[i] = min(max(loads[i]+rng.Float64()*4-2, 5), 60)
		}
		hb := schema.Heartbeat{V: 1, Server: names[i], Status: schema.StatusUp, Load: load, Interval: interval.Seconds(),
			Sessions: new(int), MaxSessions: ptrInt(100), Time: time.Now().UTC().Format(time.RFC3339Nano)}
		data, err := hb.Encode()
		if err == nil {
			err = conns[i/perConn].Publish(subjects[i], data)
		}
		if err != nil {
			log.Warn("heartbeat not published", "error", err)
		}
	}
	const slots = 100 // ticks per interval
	tick := time.NewTicker(interval / slots)
	defer tick.Stop()
	slot := 0
	for {
		select {
		case cmd, ok := <-cmds:
			if !ok {
				return nil
			}
			switch cmd {
			case "full", "free":
				full = cmd == "full"
				for i := range n {
					send(i)
				}
				for _, nc := range conns {
					if err := nc.Flush(); err != nil {
						log.Warn("flush", "error", err)
					}
				}
			}
		case <-tick.C:
			for i := slot; i < n; i += slots {
				send(i)
			}
			slot = (slot + 1) % slots
		}
	}
}

func ptrInt(v int) *int { return &v }

// agentsMain lets the loadtest binary run as its own helper.
func agentsMain(natsURL string, n, perConn int) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := RunAgents(natsURL, n, perConn, time.Second, os.Stdin, os.Stdout, log); err != nil {
		log.Error("simulated agents", "error", err)
		return 1
	}
	return 0
}
