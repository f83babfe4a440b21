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
// room; with none idle, the one silent the longest (opened, no request
// yet: 600 silent connections shut visitors out, issue 31); only with
// neither, the newcomer. One address holds at most silentPerAddr silent
// connections: past it its oldest silent one is closed (a trusted proxy,
// the local Apache, is exempt: it opens connections for everyone).
type connCap struct {
	max     int
	perAddr int
	// quiet is how long a connection must have said nothing to count as
	// silent: a burst of new connections (a load test, a class) is not
	// mistaken for a silent flood while its requests are on their way.
	quiet  time.Duration
	exempt func(host string) bool
	mu     sync.Mutex // guards open, idle, silent, byAddr and closing
	open   int
	idle   map[net.Conn]time.Time
	silent map[net.Conn]silentConn
	byAddr map[string]int
	// closing is the connections closed here whose StateClosed has not
	// come yet: already out of open, which under load would otherwise
	// count them for a while and close a visitor's new connection for
	// them (the cap's newcomer branch).
	closing map[net.Conn]bool
}

// silentConn is a connection that has sent no request yet.
type silentConn struct {
	at   time.Time
	addr string
}

// silentPerAddr is how many connections one address may hold open
// without sending a request: a browser opens six, a proxy's pool is
// exempt.
const silentPerAddr = 16

// silentAfter is connCap.quiet's default.
const silentAfter = time.Second

func newConnCap(max int, exempt func(host string) bool) *connCap {
	return &connCap{max: max, perAddr: silentPerAddr, exempt: exempt, quiet: silentAfter,
		idle: map[net.Conn]time.Time{}, silent: map[net.Conn]silentConn{}, byAddr: map[string]int{}, closing: map[net.Conn]bool{}}
}

// state is the http.Server's ConnState hook.
func (c *connCap) state(conn net.Conn, s http.ConnState) {
	var victims []net.Conn
	c.mu.Lock()
	switch s {
	case http.StateNew:
		c.open++
		addr := remoteHost(conn)
		c.silent[conn] = silentConn{at: time.Now(), addr: addr}
		c.byAddr[addr]++
		if c.byAddr[addr] > c.perAddr && (c.exempt == nil || !c.exempt(addr)) {
			if v := c.oldestSilent(addr); v != nil && v != conn {
				victims = append(victims, v)
				c.forgetSilent(v)
			}
		}
		if c.open-len(victims) > c.max {
			if v := c.oldestIdle(); v != nil {
				delete(c.idle, v)
				victims = append(victims, v)
			} else if v := c.oldestSilent(""); v != nil && v != conn {
				c.forgetSilent(v)
				victims = append(victims, v)
			} else {
				c.forgetSilent(conn)
				victims = append(victims, conn)
			}
		}
	case http.StateIdle:
		c.forgetSilent(conn)
		c.idle[conn] = time.Now()
	case http.StateActive:
		c.forgetSilent(conn)
		delete(c.idle, conn)
	case http.StateHijacked, http.StateClosed:
		c.forgetSilent(conn)
		delete(c.idle, conn)
		if c.closing[conn] {
			delete(c.closing, conn) // counted out when it was closed
		} else {
			c.open--
		}
	}
	for _, v := range victims {
		c.closing[v] = true
		c.open--
	}
	c.mu.Unlock()
	for _, v := range victims {
		_ = v.Close() // the server sees it closed: StateClosed counts it out
	}
}

// oldestIdle is the connection idle the longest; c.mu is held.
func (c *connCap) oldestIdle() net.Conn {
	var victim net.Conn
	var oldest time.Time
	for ic, at := range c.idle {
		if victim == nil || at.Before(oldest) {
			victim, oldest = ic, at
		}
	}
	return victim
}

// oldestSilent is the connection of addr ("": any) silent the longest,
// if it has been silent for quiet; c.mu is held.
func (c *connCap) oldestSilent(addr string) net.Conn {
	var victim net.Conn
	var oldest time.Time
	for sc, s := range c.silent {
		if (addr == "" || s.addr == addr) && (victim == nil || s.at.Before(oldest)) {
			victim, oldest = sc, s.at
		}
	}
	if victim != nil && time.Since(oldest) < c.quiet {
		return nil // the oldest is merely new: nothing is silent yet
	}
	return victim
}

// forgetSilent takes conn out of the silent ones; c.mu is held.
func (c *connCap) forgetSilent(conn net.Conn) {
	s, ok := c.silent[conn]
	if !ok {
		return
	}
	delete(c.silent, conn)
	if c.byAddr[s.addr]--; c.byAddr[s.addr] <= 0 {
		delete(c.byAddr, s.addr)
	}
}

// remoteHost is the host part of conn's peer.
func remoteHost(conn net.Conn) string {
	a := conn.RemoteAddr()
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
