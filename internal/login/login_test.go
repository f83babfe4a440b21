package login

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// clock is a settable time for the guard.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newGuard(secrets ...string) (*Guard, *clock) {
	g := New(secrets)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	g.now = c.now
	return g, c
}

// A verified bcrypt password is not hashed again: 100 agents reconnecting
// with one secret cost one verification, not 100.
func TestVerifiedHashRemembered(t *testing.T) {
	h := hash(t, "agent-secret")
	g, _ := newGuard(h)
	for i := range 100 {
		if got := g.Check("10.0.0.1", "agent", h, "agent-secret"); got != OK {
			t.Fatalf("check %d: %v", i, got)
		}
	}
	if n := g.Hashed(); n != 1 {
		t.Errorf("bcrypt ran %d times for 100 logins with one secret, want 1", n)
	}
	// Another password against the remembered hash is verified, and fails.
	if got := g.Check("10.0.0.1", "agent", h, "other"); got != Wrong {
		t.Errorf("a wrong password after a right one: %v", got)
	}
	if n := g.Hashed(); n != 2 {
		t.Errorf("a wrong password was not verified by bcrypt (%d runs)", n)
	}
}

// An unknown user costs one bcrypt verification, as a wrong password does:
// timing does not tell user names.
func TestUnknownUserCostsAWrongPassword(t *testing.T) {
	h := hash(t, "admin-secret")
	g, _ := newGuard(h)
	if got := g.Check("10.0.0.2", "nobody", "", "guess"); got != Wrong {
		t.Fatalf("unknown user: %v", got)
	}
	if got := g.Check("10.0.0.2", "admin", h, "guess"); got != Wrong {
		t.Fatalf("wrong password: %v", got)
	}
	if n := g.Hashed(); n != 2 {
		t.Errorf("bcrypt ran %d times for an unknown user and a wrong password, want 2", n)
	}
	plain, _ := newGuard("plain-secret")
	if got := plain.Check("10.0.0.2", "nobody", "", "guess"); got != Wrong || plain.Hashed() != 0 {
		t.Errorf("plain secrets: unknown user %v, %d bcrypt runs", got, plain.Hashed())
	}
}

func TestFailedLoginsBackOff(t *testing.T) {
	tests := []struct {
		name string
		run  func(g *Guard, c *clock) Outcome
		want Outcome
	}{
		{"five failures are free", func(g *Guard, _ *clock) Outcome {
			for range FreeFailures - 1 {
				g.Check("a", "u", "pw", "x")
			}
			return g.Check("a", "u", "pw", "pw")
		}, OK},
		{"the sixth failure makes the user wait", func(g *Guard, _ *clock) Outcome {
			for range FreeFailures + 1 {
				g.Check("a", "u", "pw", "x")
			}
			return g.Check("a", "u", "pw", "pw")
		}, Limited},
		{"the wait ends", func(g *Guard, c *clock) Outcome {
			for range FreeFailures + 1 {
				g.Check("a", "u", "pw", "x")
			}
			c.add(FirstWait)
			return g.Check("a", "u", "pw", "pw")
		}, OK},
		{"the wait doubles", func(g *Guard, c *clock) Outcome {
			for range FreeFailures + 2 {
				g.Check("a", "u", "pw", "x")
				c.add(FirstWait) // past each wait, so that each failure counts
			}
			c.add(-FirstWait + FirstWait*3/2)
			return g.Check("a", "u", "pw", "pw")
		}, Limited},
		{"another user at the address is not locked out", func(g *Guard, _ *clock) Outcome {
			for range FreeFailures + 1 {
				g.Check("a", "broken-agent", "pw", "old")
			}
			return g.Check("a", "good-agent", "pw2", "pw2")
		}, OK},
		{"many user names from one address wait too", func(g *Guard, _ *clock) Outcome {
			for i := range AddressFailures + 1 {
				g.Check("a", string(rune('A'+i)), "pw", "x")
			}
			return g.Check("a", "good-agent", "pw2", "pw2")
		}, Limited},
		{"loopback (Apache) is limited per user only", func(g *Guard, _ *clock) Outcome {
			for i := range AddressFailures + 1 {
				g.Check("127.0.0.1", string(rune('A'+i)), "pw", "x")
			}
			return g.Check("127.0.0.1", "good-agent", "pw2", "pw2")
		}, OK},
		{"another address is not locked out", func(g *Guard, _ *clock) Outcome {
			for range AddressFailures + 1 {
				g.Check("a", "u", "pw", "x")
			}
			return g.Check("b", "u", "pw", "pw")
		}, OK},
		{"one failure a minute never waits", func(g *Guard, c *clock) Outcome {
			for range 3 * FreeFailures {
				g.Check("a", "u", "pw", "x")
				c.add(MaxWait + time.Second)
			}
			return g.Check("a", "u", "pw", "pw")
		}, OK},
		{"a local check without an address is never limited", func(g *Guard, _ *clock) Outcome {
			for range 3 * AddressFailures {
				g.Check("", "u", "pw", "x")
			}
			return g.Check("", "u", "pw", "pw")
		}, OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, c := newGuard("pw", "pw2")
			if got := tt.run(g, c); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// Limited checks verify nothing: a flood of wrong passwords for a bcrypt
// user from one address costs a handful of verifications.
func TestLimitedCostsNothing(t *testing.T) {
	h := hash(t, "admin-secret")
	g, _ := newGuard(h)
	for range 1000 {
		g.Check("203.0.113.9", "admin", h, "guess")
	}
	if n := g.Hashed(); n > FreeFailures+1 {
		t.Errorf("1,000 wrong passwords from one address ran bcrypt %d times, want at most %d", n, FreeFailures+1)
	}
}

// The failure table is bounded: a million addresses do not grow it past maxAddrs.
func TestFailureTableBounded(t *testing.T) {
	g, _ := newGuard("pw")
	for i := range 3 * maxAddrs {
		g.Check(string(rune(i)), "u", "pw", "x")
	}
	g.mu.Lock()
	n := len(g.fails)
	g.mu.Unlock()
	if n > maxAddrs+1 {
		t.Errorf("failure table holds %d entries, want at most %d", n, maxAddrs+1)
	}
}

// TestDistributedGuessesBounded: wrong passwords from a new address each
// (no address ever waits) are an attack once they come in numbers: then at
// most attackRate verifications run a second, and the rest are refused
// unchecked, as Limited, which counts against no one.
func TestDistributedGuessesBounded(t *testing.T) {
	h := hash(t, "admin-secret")
	g, _ := newGuard(h)
	limited := 0
	for i := range 200 {
		if g.Check(fmt.Sprintf("198.18.%d.%d", i/250, i%250), "admin", h, "guess") == Limited {
			limited++
		}
	}
	if n, most := g.Hashed(), int64(attackFailures+attackRate+cleanRate+1); n > most {
		t.Errorf("200 guesses from 200 addresses ran bcrypt %d times, want at most %d", n, most)
	}
	if limited < 150 {
		t.Errorf("%d of 200 guesses refused unchecked", limited)
	}
	if got := g.Check("192.0.2.1", "admin", h, "admin-secret"); got == Wrong {
		t.Error("the right password during the attack counted as wrong")
	}
}

// TestAdminInUnderADistributedGuess: issue 31. 50 guesses a second of the
// admin's password from 2,000 addresses, on a guard that has never seen
// the admin: once the guesser's addresses have failed, the real admin,
// from an address with no failure, is checked within a budget of its own
// and gets in; the guess still costs at most 5 verifications a second.
func TestAdminInUnderADistributedGuess(t *testing.T) {
	h := hash(t, "admin-secret")
	g, c := newGuard(h)
	next := 0
	guess := func(n int) {
		for range n {
			g.Check(fmt.Sprintf("198.18.%d.%d", next/250, next%250), "admin", h, "guess")
			next = (next + 1) % 2000
		}
	}
	for range 40 { // every address fails once
		guess(50)
		c.add(time.Second)
	}
	in := 0
	for range 10 {
		guess(50)
		if g.Check("192.0.2.1", "admin", h, "admin-secret") == OK {
			in++
		}
		c.add(time.Second)
	}
	t.Logf("the real admin in %d of 10 times; bcrypt ran %d times for 2,510 tries", in, g.Hashed())
	if in < 8 {
		t.Errorf("the real admin got in %d of 10 times under the guess", in)
	}
	if n, most := g.Hashed(), int64(50*(attackRate+cleanRate+retryRate)+attackFailures+1); n > most {
		t.Errorf("2,500 guesses ran bcrypt %d times, want at most %d", n, most)
	}
}

// TestFailuresTakeTheFloor: issue 31. With a bcrypt user configured, an
// unknown user's failure costs a bcrypt verification; a wrong plain
// password, a constant-time compare. Every failure now answers no sooner
// than the bcrypt verification took at start, so that the time of an
// answer does not tell a user name (a lower bound: the failure sleeps).
func TestFailuresTakeTheFloor(t *testing.T) {
	h := hash(t, "admin-secret")
	g, _ := newGuard(h, "plain-secret")
	if g.floor <= 0 {
		t.Fatal("no floor measured with a bcrypt user configured")
	}
	for _, tc := range []struct{ user, want string }{{"nobody", ""}, {"ops", "plain-secret"}, {"admin", h}} {
		begin := time.Now()
		if got := g.Check("10.0.0.3", tc.user, tc.want, "guess"); got != Wrong {
			t.Fatalf("%s: %v", tc.user, got)
		}
		if took := time.Since(begin); took < g.floor {
			t.Errorf("%s's failure answered in %v, under the floor %v", tc.user, took, g.floor)
		}
	}
	if plain, _ := newGuard("plain-secret"); plain.floor != 0 {
		t.Errorf("a floor of %v without any bcrypt user", plain.floor)
	}
}

// firstPass is 10 s of a guess's first pass, 50 first-time addresses a
// second, with the real admin trying once a second from 192.0.2.1; it
// returns how many of the admin's 10 tries got in.
func firstPass(g *Guard, c *clock, h string) int {
	next, in := 0, 0
	for range 10 {
		for range 50 {
			g.Check(fmt.Sprintf("198.18.%d.%d", next/250, next%250), "admin", h, "guess")
			next++
		}
		if g.Check("192.0.2.1", "admin", h, "admin-secret") == OK {
			in++
		}
		c.add(time.Second)
	}
	return in
}

// TestNewAdminInDuringTheFirstPass: on a fresh coordinator, while each of
// a guess's 2,000 addresses still tries for the first time, the real admin
// from an address never seen is refused unchecked at most once: its next
// try is checked (retryBudget), and its password is then remembered.
func TestNewAdminInDuringTheFirstPass(t *testing.T) {
	h := hash(t, "admin-secret")
	g, c := newGuard(h)
	in := firstPass(g, c, h)
	t.Logf("the real admin in %d of 10 tries; bcrypt ran %d times for 510 tries", in, g.Hashed())
	if in < 9 {
		t.Errorf("the real admin, from a new address, got in %d of 10 times in the first pass of a distributed guess", in)
	}
	// A guesser that tries each address twice gets one more check per
	// address at most, within retryBudget.
	before := g.Hashed()
	for i := range 100 {
		addr := fmt.Sprintf("198.19.0.%d", i)
		g.Check(addr, "admin", h, "guess")
		g.Check(addr, "admin", h, "guess")
		if i%50 == 49 {
			c.add(time.Second)
		}
	}
	if n, most := g.Hashed()-before, int64(2*(attackRate+cleanRate+retryRate)); n > most {
		t.Errorf("200 guesses from 100 addresses in 2 s ran bcrypt %d times, want at most %d", n, most)
	}
}

// TestKnownAdminInFromTheFirstGuess: issue 31. A coordinator that has
// just started, under 50 guesses a second of the admin's password from
// 2,000 addresses each trying for the first time: the real admin, from
// the address it logged in from before the restart (Know), is checked
// within a budget of its own and gets in at once, every time; a known
// address that fails has no such standing any more.
func TestKnownAdminInFromTheFirstGuess(t *testing.T) {
	h := hash(t, "admin-secret")
	g, c := newGuard(h)
	g.Know(map[string]time.Time{"192.0.2.1": c.now().Add(-24 * time.Hour), "192.0.2.9": c.now().Add(-24 * time.Hour),
		"192.0.2.99": c.now().Add(-60 * 24 * time.Hour)}) // too old: forgotten
	in := firstPass(g, c, h)
	if in != 10 {
		t.Errorf("the real admin, from its known address, got in %d of 10 times in the first pass of a distributed guess", in)
	}
	if got := g.Check("192.0.2.9", "admin", h, "guess"); got != Wrong && got != Limited {
		t.Fatalf("a wrong guess from a known address: %v", got)
	}
	if st := g.standing("192.0.2.9"); st != failedBefore {
		t.Errorf("a known address that failed keeps the standing %v", st)
	}
	known, _ := g.Known()
	if _, ok := known["192.0.2.99"]; ok || len(known) != 2 {
		t.Errorf("known: %v", known)
	}
}

// TestKnownKeptOnDisk: the known addresses survive a restart through
// SaveKnown and LoadKnown; a missing file is none; a file that does not
// read is set aside, never a reason not to start.
func TestKnownKeptOnDisk(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "known-logins.json")
	if got, err := LoadKnown(path); got != nil || err != nil {
		t.Fatalf("a missing file: %v, %v", got, err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := SaveKnown(path, map[string]time.Time{"192.0.2.1": at}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the file: %v, %v", fi, err)
	}
	got, err := LoadKnown(path)
	if err != nil || !got["192.0.2.1"].Equal(at) || len(got) != 1 {
		t.Errorf("read back %v, %v", got, err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadKnown(path); got != nil || err == nil || !strings.Contains(err.Error(), "set aside") {
		t.Errorf("a corrupt file: %v, %v", got, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the corrupt file is still in place: %v", err)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) != 1 {
		t.Errorf("set aside as %v", aside)
	}
}
