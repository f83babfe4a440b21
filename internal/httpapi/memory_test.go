package httpapi

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// TestMemoryBoundedUnderAFlood: a million client addresses, each asking
// /session with a 16 KiB ?url= and then with a 2 KiB one (the longest
// placed), grow the heap by a bounded amount: the rate limiter remembers
// 100,000 addresses at most, a URL over 2 KiB books nothing, and the holds
// are bounded in bytes (16 MiB). Before, 1.4 M addresses took +475 MB and
// 12 KiB URLs 1.64 GB.
func TestMemoryBoundedUnderAFlood(t *testing.T) {
	n := 1_000_000
	if raceEnabled {
		n = 100_000
	}
	reg := alloc.New(alloc.Options{Servers: []string{"a.test/1", "b.test/1"}, Threshold: 95, Seed: 1})
	for _, s := range []string{"a.test/1", "b.test/1"} {
		if err := reg.Apply(alloc.Report{Server: s, Status: alloc.StatusUp, Load: 10, Sessions: 0, MaxSessions: 1_000_000,
			Interval: time.Hour, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	api := New(Options{Registry: reg, Limiter: NewLimiter(20, 40, nil)})
	t.Cleanup(func() { api.Close(time.Second) })
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := heap()
	huge := "https://github.com/x/y/blob/main/" + strings.Repeat("a", 16<<10)
	long := "https://github.com/x/y/blob/main/" + strings.Repeat("b", MaxWorldURL-40)
	for i := range n {
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		api.SessionFor(alloc.Visitor{Addr: addr, URL: huge})
		api.SessionFor(alloc.Visitor{Addr: addr, URL: long})
	}
	grown := float64(heap()-min(base, heap())) / (1 << 20)
	t.Logf("%d addresses with 16 KiB and 2 KiB URLs: heap +%.1f MB", n, grown)
	if grown > 100 {
		t.Errorf("heap grew by %.1f MB, want at most 100", grown)
	}
}
