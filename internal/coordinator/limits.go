package coordinator

import (
	"log/slog"
	"syscall"

	"github.com/simgate/simgate/internal/config"
)

// wsCap is the WebSocket client cap the process can hold: the file limit
// (whose soft value the Go runtime has already raised to the hard one at
// start) less a quarter of it (at least 512 descriptors) kept for NATS
// connections, SMTP, log and spool files and plain HTTP requests. A cap
// above what the file limit allows would run out of descriptors before any
// 503 (the review saw it at 19,968 clients of 20,000): /session, /metrics
// and NATS would then time out.
func wsCap(configured int, log *slog.Logger) int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return configured
	}
	return capFor(configured, l.Cur, log)
}

// connCap is how many plain HTTP connections (keep-alive ones included) may
// be open: half the descriptors wsCap keeps back from WebSocket clients,
// so that NATS, SMTP and files keep the other half.
func connCap() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 256
	}
	return int(max(l.Cur/4, 512) / 2)
}

// capFor is wsCap's arithmetic for a file limit.
func capFor(configured int, fileLimit uint64, log *slog.Logger) int {
	reserve := max(fileLimit/4, 512)
	if fileLimit <= reserve {
		return 1
	}
	allowed := fileLimit - reserve
	if uint64(configured) <= allowed {
		return configured
	}
	// The default is a ceiling, not a wish: lowering it is news only when
	// an operator asked for that many.
	say := log.Warn
	if configured == config.Default().HTTP.MaxWebSocketClients {
		say = log.Info
	}
	say("http.maxWebSocketClients lowered to what the file limit allows",
		"configured", configured, "cap", allowed, "file_limit", fileLimit,
		"next", "raise LimitNOFILE in the unit to allow more")
	return int(allowed)
}
