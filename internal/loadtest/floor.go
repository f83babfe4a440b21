package loadtest

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/schema"
)

// floorMain is the intake's baseline: the coordinator's embedded NATS
// server, configured as the coordinator configures it for n servers, with
// one in-process subscriber to every heartbeat that does nothing with
// them. Its CPU time is what carrying the heartbeats costs before any
// simgate code runs. It serves until SIGTERM.
func floorMain(port, n int) int {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	subj := schema.Subjects{Prefix: schema.DefaultPrefix}
	srv, err := bus.StartServer(bus.ServerOptions{Listen: fmt.Sprintf("127.0.0.1:%d", port), Logger: log,
		Subjects: subj, Servers: ServerNames(n)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	defer srv.Shutdown()
	nc, err := srv.Connect("simgate-loadtest-floor")
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	defer nc.Close()
	sub, err := nc.Subscribe(subj.LoadAll(), func(*nats.Msg) {})
	if err == nil {
		err = sub.SetPendingLimits(1<<20, 256<<20) // as the intake's
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
	return 0
}
