package logging

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
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
	// budget, when set, bounds the lines of every throttle sharing it.
	budget *Budget
}

// Budget bounds the lines that every throttle sharing it lets through, in
// all: whatever the kinds and sources, at most FloodLines a minute, and
// KnownLines more for sources the configuration names, over any minute
// (token buckets, so no window's edge doubles them). All floods together
// wrote 64 lines a minute; the issue asked at most 60 (issue 31).
type Budget struct {
	flood, known *rate.Limiter
}

// FloodLines and KnownLines are a Budget's lines a minute.
const (
	FloodLines = 30
	KnownLines = 30
)

// NewBudget returns a budget of FloodLines + KnownLines lines a minute.
func NewBudget() *Budget {
	// A bucket of burst b refilled at b a minute lets through at most 2b
	// in any minute.
	return &Budget{
		flood: rate.NewLimiter(rate.Every(2*time.Minute/FloodLines), FloodLines/2),
		known: rate.NewLimiter(rate.Every(2*time.Minute/KnownLines), KnownLines/2),
	}
}

// take says whether one more line may go at now; a nil budget always.
func (b *Budget) take(known bool, now time.Time) bool {
	if b == nil {
		return true
	}
	return (known && b.known.AllowN(now, 1)) || b.flood.AllowN(now, 1)
}

// Within makes t share b with the other throttles a client can feed, and
// returns t.
func (t *Throttle) Within(b *Budget) *Throttle {
	t.budget = b
	return t
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
		e = &throttled{}
		t.known[key] = e
	}
	return t.step(e, now, true)
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
			e = t.keys[key]
		}
		if e == nil {
			e = &throttled{}
			t.keys[key] = e
		}
	}
	return t.step(e, now, false)
}

// step decides for the key whose entry is e (a new one has no last line:
// it goes at once, budget allowing); known says the key names a source
// the configuration knows.
func (t *Throttle) step(e *throttled, now time.Time, known bool) (int, bool) {
	if !e.last.IsZero() && now.Sub(e.last) < t.period || !t.budget.take(known, now) {
		e.held++
		return 0, false
	}
	held := e.held
	e.last, e.held = now, 0
	return held, true
}
