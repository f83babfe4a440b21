package logging

import (
	"sync"
	"time"
)

// Throttle keeps a flood from turning the log over: for each key (a reason
// and a source), the first line goes at once, then at most one per period,
// which carries the count of the lines held back. Keys are bounded: past
// maxKeys, new keys share one ("other"), and keys idle for a period are
// forgotten.
type Throttle struct {
	period  time.Duration
	maxKeys int
	mu      sync.Mutex // guards keys, known and swept (a leaf)
	keys    map[string]*throttled
	// known holds the keys of sources the configuration names (a
	// configured user, a configured server's subject): a flood of made-up
	// names fills keys, never these, so that a real agent's stale password
	// stays visible under any flood (issue 31). At most KnownKeys.
	known map[string]*throttled
	swept time.Time
}

// KnownKeys bounds the keys of sources the configuration names, per
// throttle: with ClientKeys and "other", at most 61 lines a period.
const KnownKeys = 30

type throttled struct {
	last time.Time // when a line last went
	held int       // lines held back since
}

// ClientKeys is the key bound of every throttle a client can feed (refused
// logins, refused publishes, dropped heartbeats): at most ClientKeys+1 lines
// a period from any flood, however many sources or subjects it spreads over.
const ClientKeys = 30

// NewThrottle allows one line per key and period, for at most maxKeys keys.
func NewThrottle(period time.Duration, maxKeys int) *Throttle {
	return &Throttle{period: period, maxKeys: maxKeys, keys: map[string]*throttled{}, known: map[string]*throttled{}}
}

// AllowKnown is Allow for a key that names a source the configuration
// knows: it is kept apart from the flood's keys (and bounded by KnownKeys).
func (t *Throttle) AllowKnown(key string, now time.Time) (held int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	e := t.known[key]
	if e == nil {
		if len(t.known) >= KnownKeys {
			return t.allowLocked(key, now) // past the bound: as any other key
		}
		t.known[key] = &throttled{last: now}
		return 0, true
	}
	return t.step(e, now)
}

// sweepLocked forgets the keys idle for a period; t.mu is held.
func (t *Throttle) sweepLocked(now time.Time) {
	if now.Sub(t.swept) < t.period {
		return
	}
	for _, m := range []map[string]*throttled{t.keys, t.known} {
		for k, e := range m {
			if now.Sub(e.last) >= t.period && e.held == 0 {
				delete(m, k)
			}
		}
	}
	t.swept = now
}

// Allow reports whether a line for key may be written at now, and how many
// lines for key were held back before it.
func (t *Throttle) Allow(key string, now time.Time) (held int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(now)
	return t.allowLocked(key, now)
}

// allowLocked is Allow's decision; t.mu is held.
func (t *Throttle) allowLocked(key string, now time.Time) (int, bool) {
	e := t.keys[key]
	if e == nil {
		if len(t.keys) >= t.maxKeys {
			key = "other"
			if e = t.keys[key]; e != nil {
				return t.step(e, now)
			}
		}
		e = &throttled{}
		t.keys[key] = e
		e.last = now
		return 0, true
	}
	return t.step(e, now)
}

func (t *Throttle) step(e *throttled, now time.Time) (int, bool) {
	if now.Sub(e.last) < t.period {
		e.held++
		return 0, false
	}
	held := e.held
	e.last, e.held = now, 0
	return held, true
}
