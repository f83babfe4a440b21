// Command agent runs beside one simulation server: it measures the machine
// and publishes heartbeats to the coordinator's NATS server.
// Usage: agent -server ENTRY [-nats URL] [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/simgate/simgate/internal/agent/agentcmd"
	"github.com/simgate/simgate/internal/exitcode"
	"github.com/simgate/simgate/internal/version"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := agentcmd.Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "agent:", err)
		return exitcode.Config() // 78 under the unit, which restarts everything else
	}
	if opts.Version {
		fmt.Fprintln(stdout, "simgate agent", version.String())
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.LogLevel}))
	// Every signal is caught before anything starts: USR1 and USR2 would
	// otherwise kill an agent that is still connecting (their default action).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	drain := make(chan os.Signal, 1)
	signal.Notify(drain, syscall.SIGUSR1, syscall.SIGUSR2)
	nc, a, err := agentcmd.Build(ctx, opts, log)
	if err != nil {
		fmt.Fprintln(stderr, "agent:", err)
		return 1
	}
	defer nc.Close()
	go func() {
		for s := range drain {
			a.SetDraining(s == syscall.SIGUSR1)
		}
	}()
	log.Info("agent running", "server", opts.Server, "nats", opts.NATS, "interval", opts.Interval, "version", version.String())
	_ = a.Run(ctx, nc)
	return 0
}
