// Command loadtest measures simgate against the limit of the machine: run it
// from the repository root (scripts/loadtest.sh installs wrk first).
//
//	go run ./cmd/loadtest [-servers 10000] [-conns 64] [-duration 5s] [-rounds 3] [-ws 10000]
//	go run ./cmd/loadtest -hold 9000   # idle loopback connections beside a CI run
//	go run ./cmd/loadtest -monitor     # /session with 500 live pages on 2,000 servers, 3,000 on 20
//	go run ./cmd/loadtest -cluster -servers 1000   # one member of 3 coordinators against one alone
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/simgate/simgate/internal/loadtest"
)

func main() {
	if code, ok := loadtest.Main(os.Args[1:]); ok {
		os.Exit(code)
	}
	o := loadtest.Options{Out: os.Stdout}
	flag.IntVar(&o.Servers, "servers", 10000, "servers in the large farm, each heartbeating every second")
	flag.IntVar(&o.Conns, "conns", 64, "wrk connections")
	flag.IntVar(&o.Threads, "threads", 1, "wrk threads (1 leaves a core to the server on a 2-core machine)")
	flag.DurationVar(&o.Duration, "duration", 5*time.Second, "each wrk run")
	flag.IntVar(&o.Rounds, "rounds", 3, "wrk runs per target, alternated between targets")
	flag.IntVar(&o.WSClients, "ws", 10000, "WebSocket clients waiting on / for an availability flip")
	flag.IntVar(&o.PerConn, "agents-per-conn", 100, "simulated agents sharing one NATS connection (real agents have one each)")
	flag.BoolVar(&o.IntakeOnly, "intake-only", false, "stop after the heartbeat intake and its NATS floor")
	flag.DurationVar(&o.IntakeTime, "intake-window", 10*time.Second, "how long the heartbeat intake's CPU is measured")
	hold := flag.Int("hold", 0, "only hold this many idle connections from 127.0.0.2 until interrupted")
	monitor := flag.Bool("monitor", false, "only measure /session with live /monitor pages (500 on 2,000 servers, 3,000 on 20) against idle")
	logins := flag.Bool("logins", false, "only measure passwords: 100 bcrypt agents joining a fresh coordinator, /session under 20 wrong passwords a second, the log lines they cause")
	paging := flag.Int("paging", 0, "only measure /session while this many monitors page simgate.api.servers in a loop, against nobody paging (on -servers servers)")
	cluster := flag.Bool("cluster", false, "only measure a cluster of 3 coordinators against one alone: a member's /session, booking propagation, intake CPU per member")
	capacity := flag.String("capacity", "", "only check the capacity what-if: N+K runs a demand against N servers, predicts N+K from its history, then measures N+K (e.g. 6+2)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *monitor {
		if err := loadtest.RunMonitor(ctx, o, []loadtest.MonitorCase{{Servers: 2000, Clients: 500}, {Servers: 20, Clients: 3000}}); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *capacity != "" {
		var n, k int
		if _, err := fmt.Sscanf(*capacity, "%d+%d", &n, &k); err != nil || n < 1 || n+k < 1 {
			fmt.Fprintln(os.Stderr, "loadtest: -capacity wants N+K, such as 6+2")
			os.Exit(2)
		}
		if err := loadtest.RunCapacity(ctx, n, k, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *logins {
		if err := loadtest.RunLogins(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *paging > 0 {
		if err := loadtest.RunPaging(ctx, o, o.Servers, *paging); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *cluster {
		if err := loadtest.RunCluster(ctx, o); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *hold > 0 {
		if err := loadtest.Hold(ctx, *hold, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if err := loadtest.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}
