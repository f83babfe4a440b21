package coordcmd

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

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
type handover struct {
	u   *tableflip.Upgrader
	log *slog.Logger
}

func newHandover(log *slog.Logger) *handover {
	u, err := tableflip.New(tableflip.Options{})
	if err != nil {
		log.Info("reload (SIGHUP) off: cannot hand over from this process", "error", err)
		return &handover{log: log}
	}
	return &handover{u: u, log: log}
}

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
