package httpapi

import (
	"github.com/simgate/simgate/internal/domain"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limitedBody answers a client over its /session rate, in the contract's
// text style so that the Webots client shows it.
var limitedBody = []byte("Error: too many requests from your address, please try again in a moment.")

// maxLimited bounds the addresses the limiter remembers (about 200 bytes
// each: 20 MB at most); overflowClient is the bucket newcomers share past it.
const (
	maxLimited     = 100_000
	overflowClient = "overflow"
)

// randomKey is any key of m (map order is random), "" for an empty map.
func randomKey[V any](m map[string]V) string {
	for k := range m {
		return k
	}
	return ""
}

// Limiter is a token bucket per client address. The address comes from
// X-Forwarded-For only when the peer is a trusted proxy (the local Apache).
type Limiter struct {
	rate    rate.Limit
	burst   int
	trusted domain.Proxies
	mu      sync.Mutex // guards clients, last and full (a leaf)
	clients map[string]*limitEntry
	last    time.Time // the last sweep of idle clients
	full    time.Time // the last scan for full buckets, once at the bound
}

type limitEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewLimiter allows perSecond requests per address with the given burst
// (rate 0: no limit, addresses only). trusted holds addresses or CIDR
// ranges; they must be valid (config checks).
func NewLimiter(perSecond float64, burst int, trusted []string) *Limiter {
	return &Limiter{rate: rate.Limit(perSecond), burst: burst, clients: map[string]*limitEntry{}, last: time.Now(), trusted: domain.ParseProxies(trusted)}
}

// ClientAddr is the address a request is counted against; "" for a request
// made by a trusted proxy's host itself (no X-Forwarded-For), which is exempt:
// that is a local health check or tool, not a visitor. An IPv6 client is
// counted by its /64, which one host usually holds whole. Several
// X-Forwarded-For lines are one list, in order. For an IPv4 client it
// allocates nothing: the answer is a substring of the request's.
func (l *Limiter) ClientAddr(r *http.Request) string {
	host := peerHost(r)
	if host == "" {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !l.isTrusted(ip) {
		return client(host, ip, err == nil)
	}
	var xff string
	switch lines := r.Header["X-Forwarded-For"]; len(lines) {
	case 0:
		return ""
	case 1:
		xff = lines[0]
	default:
		xff = strings.Join(lines, ",")
	}
	// The right-most address not itself a trusted proxy is the client.
	for rest := xff; ; {
		i := strings.LastIndexByte(rest, ',')
		p := strings.TrimSpace(rest[i+1:])
		pip, err := netip.ParseAddr(p)
		if err != nil {
			return client(host, ip, true)
		}
		if !l.isTrusted(pip) || i < 0 {
			return client(p, pip, true)
		}
		rest = rest[:i]
	}
}

// client names a client address: itself, or its /64 for IPv6.
func client(s string, ip netip.Addr, parsed bool) string {
	if !parsed || !ip.Is6() || ip.Is4In6() {
		return s
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// peerHost is the host part of the connection's remote address.
func peerHost(r *http.Request) string {
	if r.RemoteAddr == "" {
		return "" // a request made in-process (tests, benchmarks)
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// TrustedHost reports whether host (a peer's address) is a trusted proxy.
func (l *Limiter) TrustedHost(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && l.isTrusted(ip)
}

func (l *Limiter) isTrusted(ip netip.Addr) bool { return l.trusted.Trust(ip) }

// Allow takes one token for the request's client; a limiter of rate 0
// only tells client addresses and allows everything.
func (l *Limiter) Allow(r *http.Request) bool { return l.AllowAddr(l.ClientAddr(r)) }

// AllowAddr takes one token for addr, a ClientAddr answer ("" is exempt).
func (l *Limiter) AllowAddr(addr string) bool {
	if l.rate == 0 || addr == "" {
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
		if len(l.clients) >= maxLimited && now.Sub(l.full) >= time.Second {
			// A full bucket says nothing a new one would not: forget those
			// (a scan a second at most: a flood of newcomers is not n²).
			for k, old := range l.clients {
				if old.lim.TokensAt(now) >= float64(l.burst) {
					delete(l.clients, k)
				}
			}
			l.full = now
		}
		if len(l.clients) >= maxLimited {
			// Still full (a million addresses, each spending): the newcomers
			// share one bucket until some are forgotten.
			addr = overflowClient
			if e = l.clients[addr]; e == nil {
				delete(l.clients, randomKey(l.clients))
			}
		}
	}
	if e == nil {
		e = &limitEntry{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[addr] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}
