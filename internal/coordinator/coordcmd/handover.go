package coordcmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/coreos/go-systemd/v22/daemon"
)

// handover hands the coordinator over to a new process on SIGHUP (the
// unit's ExecReload, a new binary in place): cloudflare/tableflip starts
// the new binary with this one's HTTP listener, so that no visitor is
// refused meanwhile; once the new process is ready to take the NATS port
// and the state store, this one lets go of them and of everything else
// but the sessions its waiting room relays, and exits when those end.
// Without tableflip (a second coordinator in one process: tests), reloads
// are off and the coordinator listens by itself.
//
// The new process says when it is ready (it places visitors) with SIGUSR1
// to the old one, whose pid the old one put in $SIMGATE_HANDOVER: until
// then, the old one answers its HTTP port (coordinator.Yield). A process
// started by an old binary, which sets no such variable, sends nothing.
type handover struct {
	u      *tableflip.Upgrader
	log    *slog.Logger
	nextUp chan struct{} // closed at the new process's SIGUSR1
	once   sync.Once
}

// handoverEnv carries the old process's pid to the new one.
const handoverEnv = "SIMGATE_HANDOVER"

func newHandover(log *slog.Logger) *handover {
	u, err := tableflip.New(tableflip.Options{})
	if err != nil {
		log.Info("reload (SIGHUP) off: cannot hand over from this process", "error", err)
		return &handover{log: log, nextUp: make(chan struct{})}
	}
	return &handover{u: u, log: log, nextUp: make(chan struct{})}
}

// catchReady catches the new process's SIGUSR1 from now on: a process
// that handed over and did not catch it would die of it.
func (h *handover) catchReady() {
	if h.u == nil {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		<-sig
		h.once.Do(func() { close(h.nextUp) })
	}()
}

// nextReady is closed once the new process says it is ready.
func (h *handover) nextReady() <-chan struct{} { return h.nextUp }

// tellParent tells the process this one replaces that it is ready, once
// opened is closed: at most readyWait later, as the old one stops
// waiting then anyway.
func (h *handover) tellParent(ctx context.Context, opened <-chan struct{}) {
	pid, err := strconv.Atoi(os.Getenv(handoverEnv))
	if err != nil || pid <= 1 || pid != os.Getppid() {
		return // an old binary's child, or the parent is gone
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-opened:
	case <-t.C:
	case <-ctx.Done():
		return
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		h.log.Warn("reload: cannot tell the previous process this one is ready", "pid", pid, "error", err)
	}
}

// readyWait bounds how long the new process takes to be ready.
const readyWait = 30 * time.Second

// listen is the HTTP listener on port: the previous process's when this
// one replaces it; nil when the coordinator listens by itself.
func (h *handover) listen(port int) (net.Listener, error) {
	if h.u == nil {
		return nil, nil
	}
	ln, err := h.u.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("HTTP port %d (key \"port\", flag -port): %w", port, err)
	}
	return ln, nil
}

// replaces says whether this process replaces a running coordinator.
func (h *handover) replaces() bool { return h.u != nil && h.u.HasParent() }

// ready tells the previous process to let go (of NATS and the store).
func (h *handover) ready() error {
	if h.u == nil {
		return nil
	}
	return h.u.Ready()
}

// upgrade starts the new process and waits until it is ready.
func (h *handover) upgrade() {
	if h.u == nil {
		h.log.Warn("reload (SIGHUP) ignored: this process cannot hand over; restart instead")
		return
	}
	h.log.Info("reload: starting the new process", "executable", os.Args[0])
	_ = os.Setenv(handoverEnv, strconv.Itoa(os.Getpid()))
	if err := h.u.Upgrade(); err != nil {
		h.log.Error("reload failed: this process serves on", "error", err)
	}
}

// exit is closed once the new process has taken over.
func (h *handover) exit() <-chan struct{} {
	if h.u == nil {
		return nil
	}
	return h.u.Exit()
}

func (h *handover) stop() {
	if h.u != nil {
		h.u.Stop()
	}
}

// notifyReady tells systemd (Type=notify, NotifyAccess=all) that this
// process is the service's main one and serves: at start, and from the
// new process after a reload. Nothing without a notify socket.
func notifyReady(log *slog.Logger) {
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady+"\nMAINPID="+strconv.Itoa(os.Getpid())); err != nil {
		log.Warn("cannot tell systemd this process is ready", "error", err)
	}
}
