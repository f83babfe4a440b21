package httpapi

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limitedBody answers a client over its /session rate, in the contract's
// text style so that the Webots client shows it.
var limitedBody = []byte("Error: too many requests from your address, please try again in a moment.")

// Limiter is a token bucket per client address. The address comes from
// X-Forwarded-For only when the peer is a trusted proxy (the local Apache).
type Limiter struct {
	rate    rate.Limit
	burst   int
	trusted []*net.IPNet
	mu      sync.Mutex
	clients map[string]*limitEntry
	last    time.Time
}

type limitEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewLimiter allows perSecond requests per address with the given burst.
// trusted holds addresses or CIDR ranges; they must be valid (config checks).
func NewLimiter(perSecond float64, burst int, trusted []string) *Limiter {
	l := &Limiter{rate: rate.Limit(perSecond), burst: burst, clients: map[string]*limitEntry{}, last: time.Now()}
	for _, t := range trusted {
		if !strings.Contains(t, "/") {
			if strings.Contains(t, ":") {
				t += "/128"
			} else {
				t += "/32"
			}
		}
		if _, n, err := net.ParseCIDR(t); err == nil {
			l.trusted = append(l.trusted, n)
		}
	}
	return l
}

// ClientAddr is the address a request is counted against; "" for a request
// made by a trusted proxy's host itself (no X-Forwarded-For), which is exempt:
// that is a local health check or tool, not a visitor.
func (l *Limiter) ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil || !l.isTrusted(ip) {
		return host
	}
	xff := r.Header.Get("X-Forwarded-For")
	if xff == "" {
		return ""
	}
	// The right-most address not itself a trusted proxy is the client.
	parts := strings.Split(xff, ",")
	for i := len(parts) - 1; i >= 0; i-- {
		p := strings.TrimSpace(parts[i])
		pip := net.ParseIP(p)
		if pip == nil {
			return host
		}
		if !l.isTrusted(pip) || i == 0 {
			return pip.String()
		}
	}
	return host
}

func (l *Limiter) isTrusted(ip net.IP) bool {
	for _, n := range l.trusted {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Allow takes one token for the request's client.
func (l *Limiter) Allow(r *http.Request) bool {
	addr := l.ClientAddr(r)
	if addr == "" {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) > time.Minute {
		// Forget idle clients so the map stays bounded by recent ones.
		for k, e := range l.clients {
			if now.Sub(e.seen) > time.Minute {
				delete(l.clients, k)
			}
		}
		l.last = now
	}
	e := l.clients[addr]
	if e == nil {
		e = &limitEntry{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[addr] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}
