// Package login checks passwords so that a password costs the attacker, not
// the farm: a bcrypt hash is verified once per secret and then remembered,
// at most a few verifications run at once, an address that keeps failing is
// refused without any verification for a growing time, and an unknown user
// costs what a wrong password costs, so that user names cannot be told
// apart by timing. It knows nothing of NATS or HTTP: both ask it.
package login

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"math"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Outcome says how a check ended.
type Outcome int

const (
	OK      Outcome = iota // the password is right
	Wrong                  // wrong password, or unknown user
	Limited                // the address failed too often lately: not even verified
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Wrong:
		return "wrong user name or password"
	}
	return "too many failed logins from this address: refused without checking"
}

// Defaults, measured on a 2-core machine (README, Security): a cost-11
// bcrypt hash takes about 120 ms of one core.
const (
	// FreeFailures is how many failures a user at an address has in a
	// minute before it waits; AddressFailures, an address whatever the user.
	FreeFailures    = 5
	AddressFailures = 30
	// FirstWait is the first wait after those; each further failure doubles
	// it, up to MaxWait. A success forgets the address.
	FirstWait = time.Second
	MaxWait   = time.Minute
	// maxAddrs bounds the failure table; past it, new keys share one entry.
	maxAddrs = 10000
	// maxRemembered bounds the cache of verified secrets.
	maxRemembered = 10000
)

// Guard checks passwords. The zero value is not usable: use New.
type Guard struct {
	key   []byte        // HMAC key for remembered secrets: never leaves the process
	slots chan struct{} // bcrypt verifications running now: one per core
	// narrow is half the cores: while failures come in numbers (an attack),
	// every verification takes one of these too, so that /session and the
	// heartbeats keep the other half; a fresh start's agents, which do not
	// fail, get every core.
	narrow chan struct{}
	// attackBudget bounds the bcrypt verifications a second while failures
	// come in numbers, from however many addresses: past it a login is
	// refused unchecked (the client retries), so that a distributed guess
	// costs the farm at most attackRate verifications a second.
	attackBudget *rate.Limiter
	// cleanBudget is a budget of its own, during an attack, for addresses
	// with no failure on record: a distributed guess spends attackBudget
	// once its addresses have failed, and the real admin's address, which
	// never fails, is still checked (issue 31: on a fresh coordinator the
	// admin got in 0 of 60 times under 50 guesses a second from 2,000
	// addresses).
	cleanBudget *rate.Limiter
	// knownBudget is a budget of its own, during an attack, for the
	// addresses a login succeeded from before (known, kept across
	// restarts by the caller: SaveKnown): on a fresh coordinator, a guess
	// from 2,000 addresses each trying once spends cleanBudget, and the
	// real admin, from its usual address, is still checked first.
	knownBudget *rate.Limiter
	// retryBudget is a budget of its own, during an attack, for an address
	// that was refused unchecked and has no failure on record: a guess
	// from many addresses tries each once in its first pass, and the real
	// admin, from an address never seen before, tries again; its second
	// try is checked (issue 31: on a fresh coordinator, the admin competed
	// with 50 first-time addresses a second until each had tried once).
	retryBudget *rate.Limiter
	dummy       string // a hash of the configured cost, for unknown users
	// floor is how long a failed check takes at least: what a bcrypt
	// verification of the configured cost took at start, 0 without one.
	// A wrong plain password answered in 1 ms and an unknown user in
	// 120 ms: user names leaked (issue 31). Failures wait (asleep, no CPU)
	// until the floor.
	floor time.Duration
	now   func() time.Time
	// hashed counts bcrypt verifications (for /metrics and tests).
	hashed atomic.Int64

	mu       sync.Mutex // guards remember, fails, known and the attack window
	remember map[string][sha256.Size]byte
	fails    map[string]*failure
	known    map[string]time.Time // addresses a login succeeded from, and when last
	changed  uint64               // moves when known does
	// failures in the attack window (attackWindow long) that began at
	// window, and in the one before it.
	window          time.Time
	inWindow, prior int
}

// An attack is attackFailures failures or more in attackWindow; during
// one, at most attackRate bcrypt verifications run a second (about a third
// of a core at cost 11).
const (
	attackWindow   = 10 * time.Second
	attackFailures = 10
	attackRate     = 3
	cleanRate      = 2
	retryRate      = 1
)

type failure struct {
	count  int       // failures since window
	window time.Time // when this count began
	until  time.Time // refused without checking before this
	last   time.Time // the latest failure
}

// New returns a guard for the configured secrets (plain or bcrypt): an
// unknown user is checked against a hash of the highest bcrypt cost among
// them, so that it costs what a wrong password costs.
func New(secrets []string) *Guard {
	g := &Guard{
		key:          make([]byte, 32),
		slots:        make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		narrow:       make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		attackBudget: rate.NewLimiter(attackRate, attackRate),
		cleanBudget:  rate.NewLimiter(cleanRate, cleanRate),
		knownBudget:  rate.NewLimiter(cleanRate, cleanRate),
		retryBudget:  rate.NewLimiter(retryRate, retryRate),
		now:          time.Now,
		remember:     map[string][sha256.Size]byte{},
		fails:        map[string]*failure{},
		known:        map[string]time.Time{},
	}
	_, _ = rand.Read(g.key)
	cost := 0
	for _, s := range secrets {
		if IsHash(s) {
			if c, err := bcrypt.Cost([]byte(s)); err == nil && c > cost {
				cost = c
			}
		}
	}
	if cost > 0 {
		h, err := bcrypt.GenerateFromPassword(g.key[:16], cost)
		if err == nil {
			g.dummy = string(h)
			begin := time.Now()
			_ = bcrypt.CompareHashAndPassword(h, g.key[16:])
			g.floor = min(time.Since(begin), time.Second) // under NATS's 2 s auth timeout, however busy the start

		}
	}
	return g
}

// pad waits until a failed check that began at begin has taken the floor.
func (g *Guard) pad(begin time.Time) {
	if d := g.floor - time.Since(begin); d > 0 {
		time.Sleep(d) // a deliberate delay: a failure's answer says nothing by its time
	}
}

// Hashed is how many bcrypt verifications ran.
func (g *Guard) Hashed() int64 { return g.hashed.Load() }

// IsHash says whether a configured password is a bcrypt hash.
func IsHash(s string) bool { return strings.HasPrefix(s, "$2") }

// Refused counts a failure of another kind (an unknown token, an nkey
// signature that does not verify) for user at addr.
func (g *Guard) Refused(addr, user string) {
	g.failed(addr, user)
}

// Limited says whether user at addr must wait before its next try.
func (g *Guard) Limited(addr, user string) bool { return g.limited(addr, user) }

// LimitedAddr says whether addr, whatever the user, must wait: for
// credentials that cannot be guessed (an nkey's signature, a long token),
// where no user's own failures should lock it out (issue 31), only an
// address that keeps failing is slowed.
func (g *Guard) LimitedAddr(addr string) bool {
	if addr == "" {
		return false
	}
	free := keys(addr, "")[1]
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.fails[g.slot(free.key)]
	return f != nil && now.Before(f.until)
}

// Check reports whether password is want's, for user at addr (addr "" when
// unknown: never limited). want "" means the user is unknown: the check
// costs the same and fails.
func (g *Guard) Check(addr, user, want, password string) Outcome {
	begin := time.Now()
	if g.limited(addr, user) {
		return Limited
	}
	switch ok, checked := g.verify(want, password, g.standing(addr)); {
	case ok:
		g.succeeded(addr, user)
		return OK
	case !checked:
		g.unchecked(addr) // over an attack's budget: no failure, but no clean address either
		return Limited
	}
	g.failed(addr, user)
	g.pad(begin)
	return Wrong
}

// verify compares password with want: in constant time for a plain
// secret; for a bcrypt hash, from the remembered secrets or with bcrypt,
// at most len(slots) at once. checked is false when an attack's budget
// left it unchecked; st is the address's standing.
func (g *Guard) verify(want, password string, st standing) (ok, checked bool) {
	if want == "" {
		switch {
		case g.dummy == "":
			subtle.ConstantTimeCompare([]byte(password), g.key)
		case !g.budget(st):
			return false, false
		default:
			g.bcrypt(g.dummy, password)
		}
		return false, true
	}
	if password == "" {
		return false, true
	}
	if !IsHash(want) {
		return subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1, true
	}
	mac := g.mac(password)
	g.mu.Lock()
	known, found := g.remember[want]
	g.mu.Unlock()
	// A remembered hash with another password is verified again: the
	// configured hash is what decides, never the cache alone.
	if found && hmac.Equal(known[:], mac[:]) {
		return true, true
	}
	if !g.budget(st) {
		return false, false
	}
	if !g.bcrypt(want, password) {
		return false, true
	}
	g.mu.Lock()
	if len(g.remember) >= maxRemembered {
		clear(g.remember)
	}
	g.remember[want] = mac
	g.mu.Unlock()
	return true, true
}

func (g *Guard) bcrypt(hash, password string) bool {
	if g.attacked() {
		g.narrow <- struct{}{}
		defer func() { <-g.narrow }()
	}
	g.slots <- struct{}{}
	defer func() { <-g.slots }()
	g.hashed.Add(1)
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

func (g *Guard) mac(password string) [sha256.Size]byte {
	h := hmac.New(sha256.New, g.key)
	h.Write([]byte(password))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// standing is what an address's record says of it.
type standing uint8

const (
	failedBefore standing = iota // a failure on record (or no address)
	retried                      // refused unchecked before, no failure on record
	clean                        // no failure on record
	known                        // a login succeeded from it before, no failure since
)

// standing is addr's standing.
func (g *Guard) standing(addr string) standing {
	if addr == "" {
		return failedBefore
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, seen := g.fails[addr]; seen {
		if f.count == 0 { // refused unchecked, never failed
			return retried
		}
		return failedBefore
	}
	if _, ok := g.known[addr]; ok {
		return known
	}
	return clean
}

// budget says whether a bcrypt verification may run now: always but
// during an attack, then first within knownBudget for an address a login
// succeeded from before, or retryBudget for one refused unchecked before,
// then attackBudget, then cleanBudget for an address with no failure on
// record.
func (g *Guard) budget(st standing) bool {
	if !g.attacked() {
		return true
	}
	now := g.now()
	return (st == known && g.knownBudget.AllowN(now, 1)) || (st == retried && g.retryBudget.AllowN(now, 1)) ||
		g.attackBudget.AllowN(now, 1) || (st >= clean && g.cleanBudget.AllowN(now, 1))
}

// unchecked records that addr was refused unchecked during an attack: no
// failure (it waits for nothing), but the address is no longer clean, so
// that a guess from many addresses does not spend cleanBudget for ever;
// its next try has retryBudget (a failure there ends that).
func (g *Guard) unchecked(addr string) {
	if addr == "" {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.fails[addr]; !ok && len(g.fails) < maxAddrs {
		g.fails[addr] = &failure{window: now, last: now}
	}
}

// attacked says whether failures come in numbers now.
func (g *Guard) attacked() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.roll(g.now())
	return g.inWindow+g.prior >= attackFailures
}

// roll moves the attack window to now. g.mu is held.
func (g *Guard) roll(now time.Time) {
	switch d := now.Sub(g.window); {
	case d >= 2*attackWindow || d < 0:
		g.window, g.inWindow, g.prior = now, 0, 0
	case d >= attackWindow:
		g.window, g.prior, g.inWindow = g.window.Add(attackWindow), g.inWindow, 0
	}
}

// keys are the failure table's entries a check for user at addr counts
// against: the pair, so that one misconfigured agent behind a shared
// address locks out only itself, and the address, with a larger allowance,
// so that trying many user names costs as much as trying many passwords.
func keys(addr, user string) [2]struct {
	key  string
	free int
} {
	free := AddressFailures
	if ip, err := netip.ParseAddr(addr); err == nil && ip.IsLoopback() {
		// Apache's connections (agents over wss://, visitors of /monitor)
		// all come from loopback: one client failing there must not lock
		// every agent out; the pair's limit still holds.
		free = math.MaxInt
	}
	return [2]struct {
		key  string
		free int
	}{{addr + "\x00" + user, FreeFailures}, {addr, free}}
}

func (g *Guard) limited(addr, user string) bool {
	if addr == "" {
		return false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range keys(addr, user) {
		if f := g.fails[g.slot(k.key)]; f != nil && now.Before(f.until) {
			return true
		}
	}
	return false
}

func (g *Guard) succeeded(addr, user string) {
	if addr == "" {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.fails, keys(addr, user)[0].key)
	if last, ok := g.known[addr]; !ok || now.Sub(last) > time.Hour {
		g.know(addr, now)
	}
}

// Known addresses: how many are kept, and for how long after their last
// success.
const (
	maxKnown  = 1000
	knownKeep = 30 * 24 * time.Hour
)

// know records a success from addr at t, the oldest forgotten past
// maxKnown. g.mu is held.
func (g *Guard) know(addr string, t time.Time) {
	if _, ok := g.known[addr]; !ok && len(g.known) >= maxKnown {
		oldest := ""
		for a, at := range g.known {
			if oldest == "" || at.Before(g.known[oldest]) {
				oldest = a
			}
		}
		delete(g.known, oldest)
	}
	g.known[addr] = t
	g.changed++
}

// Known is the addresses a login succeeded from within knownKeep, with
// when last, and a version that moves when they change (save them when
// it moved: SaveKnown).
func (g *Guard) Known() (map[string]time.Time, uint64) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]time.Time, len(g.known))
	for a, t := range g.known {
		if now.Sub(t) < knownKeep {
			out[a] = t
		}
	}
	return out, g.changed
}

// Know adds addresses a login succeeded from (read back from disk at start:
// LoadKnown); those older than knownKeep are left out.
func (g *Guard) Know(addrs map[string]time.Time) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for a, t := range addrs {
		if now.Sub(t) < knownKeep && !t.After(now.Add(time.Hour)) {
			if old, ok := g.known[a]; !ok || t.After(old) {
				g.know(a, t)
			}
		}
	}
}

func (g *Guard) failed(addr, user string) {
	if addr == "" {
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.roll(now)
	g.inWindow++
	for _, k := range keys(addr, user) {
		key := g.slot(k.key)
		f := g.fails[key]
		if f == nil {
			if len(g.fails) >= maxAddrs {
				g.sweep(now)
				key = g.slot(k.key)
			}
			f = &failure{window: now}
			g.fails[key] = f
		}
		// Failures count within a window of MaxWait: a client that fails
		// once a minute (an agent with an old password) never grows its wait.
		if now.Sub(f.window) > MaxWait {
			f.count, f.window = 0, now
		}
		f.count++
		f.last = now
		if f.count > k.free {
			wait := FirstWait << min(f.count-k.free-1, 16)
			f.until = now.Add(min(wait, MaxWait))
		}
	}
}

// slot is the failure table's key for key: itself, or, once the table is
// full, one entry every new key shares. g.mu is held.
func (g *Guard) slot(key string) string {
	if _, ok := g.fails[key]; ok || len(g.fails) < maxAddrs {
		return key
	}
	return "other"
}

// sweep forgets entries that are neither waiting nor recent. g.mu is held.
func (g *Guard) sweep(now time.Time) {
	for k, f := range g.fails {
		if now.After(f.until) && now.Sub(f.last) > MaxWait {
			delete(g.fails, k)
		}
	}
}
