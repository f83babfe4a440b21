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
	mu      sync.Mutex // guards keys and swept (a leaf)
	keys    map[string]*throttled
	swept   time.Time
}

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
	return &Throttle{period: period, maxKeys: maxKeys, keys: map[string]*throttled{}}
}

// Allow reports whether a line for key may be written at now, and how many
// lines for key were held back before it.
func (t *Throttle) Allow(key string, now time.Time) (held int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.swept) >= t.period {
		for k, e := range t.keys {
			if now.Sub(e.last) >= t.period && e.held == 0 {
				delete(t.keys, k)
			}
		}
		t.swept = now
	}
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
