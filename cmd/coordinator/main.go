// Command coordinator is simgate's session server: it embeds the NATS server
// agents publish heartbeats to, and answers the Webots clients over HTTP and
// WebSocket. Usage: coordinator [flags] [CONFIG.json]
package main

import (
	"os"

	"github.com/simgate/simgate/internal/coordinator/coordcmd"
)

func main() { os.Exit(coordcmd.Run(os.Args[1:], os.Stdout, os.Stderr)) }
