package history

import (
	"testing"
	"time"
)

// BenchmarkTick is the recorder's work each second on a farm of 10,000
// servers (the farm sampled every second): its cost in a core is
// ns/op ÷ 10⁹ (README, Capacity: the history's cost).
func BenchmarkTick(b *testing.B) {
	servers := make([]ServerSample, 10000)
	for i := range servers {
		servers[i] = ServerSample{Load: float64(10 + i%80), Sessions: i % 5, MaxSessions: 5, Interval: time.Second}
	}
	src := &sources{servers: servers, c: Counters{Refused: map[string]uint64{"full": 1}}}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r := NewRecorder(Options{Member: "m", Sources: src, Now: func() time.Time { return now }})
	b.ResetTimer()
	for range b.N {
		now = now.Add(time.Second)
		src.arrive(3, 2, 1, "full")
		r.Tick(now)
		r.keep(b.Context())
	}
}
