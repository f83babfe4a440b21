package httpapi

import (
	"log/slog"
	"net/http"
	"time"
)

// Limits are the HTTP server's defences against slow and greedy clients.
type Limits struct {
	ReadHeader     time.Duration // a client trickling its headers is cut after this
	Read           time.Duration // whole request
	Write          time.Duration // whole answer (WebSocket connections clear it)
	Idle           time.Duration // keep-alive between requests
	MaxHeaderBytes int           // larger request headers are answered 431
	// MaxConns bounds the open HTTP connections that are not WebSocket
	// clients (keep-alive ones included; conns.go); 0: no bound.
	MaxConns int
	// Exempt, when set, says which peers may hold any number of silent
	// connections (the trusted proxies: the local Apache's pool).
	Exempt func(host string) bool
	// SilentAfter is how long a connection must have sent nothing to be
	// closed as silent (0: a second).
	SilentAfter time.Duration
}

// DefaultLimits suit a public session server: requests are tiny, answers short.
func DefaultLimits() Limits {
	return Limits{
		// Well under the README balancer's 5 s timeout: a connection that
		// says nothing is let go before Apache gives up on it.
		ReadHeader:     2 * time.Second,
		Read:           10 * time.Second,
		Write:          10 * time.Second,
		Idle:           60 * time.Second,
		MaxHeaderBytes: 16 << 10,
	}
}

// NewServer wraps h in an http.Server with the limits l; its own errors
// (TLS handshakes, hijack failures) go to log at debug level.
func NewServer(h http.Handler, l Limits, log *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if l.MaxConns > 0 {
		cc := newConnCap(l.MaxConns, l.Exempt)
		if l.SilentAfter > 0 {
			cc.quiet = l.SilentAfter
		}
		srv.ConnState = cc.state
	}
	return srv
}
