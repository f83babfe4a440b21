package capacity

import (
	"testing"
	"time"
)

// BenchmarkReplayDay: one replay of a day of demand (2 visitors a second,
// sessions of 5 minutes, on 10 servers of 5 seats, 1 s heartbeats). The
// what-if makes 8 rows of 5 replays each of up to a week: its cost is
// about 40 × 7 of these, once an hour at most (README, Capacity).
func BenchmarkReplayDay(b *testing.B) {
	hist := record(10, 2, 24*60, 5*time.Minute)
	m, d, err := Fit(hist, hist[0].Start, hist[len(hist)-1].Start.Add(time.Minute), Queue{Enabled: true, Max: 1000, MaxWait: 30 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	m.Servers = 10
	for b.Loop() {
		Replay(m, d, 10, 1)
	}
}
