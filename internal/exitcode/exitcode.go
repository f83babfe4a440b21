// Package exitcode is the exit statuses both binaries share: a
// configuration that cannot run has its own, so that the units restart
// every other failure (a panic and an out-of-memory death exit 2 too).
package exitcode

import (
	"os"
	"strconv"
)

// Config is the exit status for a configuration (a file, flags) the
// program cannot run with: 2 (PROTOCOL §3), or what
// SIMGATE_CONFIG_ERROR_STATUS says. The units set 78 (sysexits'
// EX_CONFIG, systemd's convention) and prevent restarts on it alone.
func Config() int {
	if n, err := strconv.Atoi(os.Getenv("SIMGATE_CONFIG_ERROR_STATUS")); err == nil && n > 0 && n < 126 {
		return n
	}
	return 2
}
