package httpapi

import (
	"log/slog"
	"syscall"
)

// WebSocketCap is the WebSocket clients the process's file limit allows:
// configured, or less, keeping a quarter of the limit (at least 512) for
// everything else; lowered, it says so (at info level when configured is
// the default, which no one chose).
func WebSocketCap(configured int, isDefault bool, log *slog.Logger) int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return configured
	}
	return capFor(configured, isDefault, l.Cur, log)
}

// ConnCap is the HTTP connections the file limit allows: half of what the
// WebSocket clients leave.
func ConnCap() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 256
	}
	return int(max(l.Cur/4, 512) / 2)
}

func capFor(configured int, isDefault bool, fileLimit uint64, log *slog.Logger) int {
	reserve := max(fileLimit/4, 512)
	if fileLimit <= reserve {
		return 1
	}
	allowed := fileLimit - reserve
	if uint64(configured) <= allowed {
		return configured
	}
	say := log.Warn
	if isDefault {
		say = log.Info
	}
	say("http.maxWebSocketClients lowered to what the file limit allows",
		"configured", configured, "cap", allowed, "file_limit", fileLimit,
		"next", "raise LimitNOFILE in the unit to allow more")
	return int(allowed)
}
