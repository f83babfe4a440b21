package httpapi

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// connCap bounds the HTTP connections that are not WebSocket clients
// (those have their own cap): ~500 idle keep-alive connections beside a
// full WebSocket cap took the last file descriptors, and /session timed out
// for 43 s. Past the cap, the connection idle the longest is closed to make
// room; with none idle, the newcomer is.
type connCap struct {
	max  int
	mu   sync.Mutex // guards open and idle
	open int
	idle map[net.Conn]time.Time
}

func newConnCap(max int) *connCap { return &connCap{max: max, idle: map[net.Conn]time.Time{}} }

// state is the http.Server's ConnState hook.
func (c *connCap) state(conn net.Conn, s http.ConnState) {
	var victim net.Conn
	c.mu.Lock()
	switch s {
	case http.StateNew:
		c.open++
		if c.open > c.max {
			victim = conn
			var oldest time.Time
			for ic, at := range c.idle {
				if victim == conn || at.Before(oldest) {
					victim, oldest = ic, at
				}
			}
			delete(c.idle, victim)
		}
	case http.StateIdle:
		c.idle[conn] = time.Now()
	case http.StateActive:
		delete(c.idle, conn)
	case http.StateHijacked, http.StateClosed:
		delete(c.idle, conn)
		c.open--
	}
	c.mu.Unlock()
	if victim != nil {
		_ = victim.Close() // the server sees it closed: StateClosed counts it out
	}
}
