package history

import (
	"math"
	"sync"
	"time"
)

// waitBounds are the buckets of the seated visitors' waits the history
// keeps a percentile from (seconds).
var waitBounds = []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, math.Inf(1)}

// Waits counts the visitors seated from the waiting room and their waits,
// for Counters. The zero value is ready.
type Waits struct {
	mu     sync.Mutex // a leaf
	seated uint64
	sum    float64
	counts []uint64 // per waitBounds bucket, not cumulative
}

// Seat counts a visitor seated after wait.
func (w *Waits) Seat(wait time.Duration) {
	s := wait.Seconds()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.counts == nil {
		w.counts = make([]uint64, len(waitBounds))
	}
	w.seated++
	w.sum += s
	for i, b := range waitBounds {
		if s <= b {
			w.counts[i]++
			break
		}
	}
}

// Fill sets c's Seated, WaitSum and Waits (cumulative; the last bucket's
// bound is twice the largest finite one).
func (w *Waits) Fill(c *Counters) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c.Seated, c.WaitSum, c.Waits = w.seated, w.sum, make([]Bucket, 0, len(waitBounds))
	var cum uint64
	for i, b := range waitBounds {
		if i < len(w.counts) {
			cum += w.counts[i]
		}
		if math.IsInf(b, 1) {
			b = 2 * waitBounds[len(waitBounds)-2]
		}
		c.Waits = append(c.Waits, Bucket{Le: b, Count: cum})
	}
}
