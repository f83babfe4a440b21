package alloc

import (
	"fmt"
	"testing"
	"time"
)

// benchRegistry has n servers up at loads spread over [0, 50), reporting a
// large capacity so that reservations never fill them during a benchmark.
func benchRegistry(b *testing.B, n int) (*Registry, []Report) {
	b.Helper()
	names := make([]string, n)
	reps := make([]Report, n)
	for i := range names {
		names[i] = fmt.Sprintf("sim%d.example.org/2000", i)
	}
	r := New(Options{Servers: names, Threshold: 95, Seed: 1})
	now := time.Now()
	for i, name := range names {
		reps[i] = Report{Server: name, Status: StatusUp, Load: float64(i%500) / 10, Sessions: 1,
			MaxSessions: 1_000_000, Interval: time.Second, At: now}
		if err := r.Apply(reps[i]); err != nil {
			b.Fatal(err)
		}
	}
	return r, reps
}

// BenchmarkPlace: one /session decision. It must not grow with the farm:
// compare the three sizes (go test -bench Place -benchmem ./internal/alloc).
func BenchmarkPlace(b *testing.B) {
	for _, n := range []int{10, 1_000, 10_000} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			r, _ := benchRegistry(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := r.Place(Visitor{}); !ok {
					b.Fatal("no server")
				}
			}
		})
	}
}

// BenchmarkApply: one heartbeat reaching the registry (the intake's share).
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{10, 1_000, 10_000} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			r, reps := benchRegistry(b, n)
			at := time.Now()
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				rep := reps[i%n]
				at = at.Add(time.Millisecond)
				rep.At = at
				rep.Load = float64((i*7)%900) / 10
				if err := r.Apply(rep); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkSamples: the demand history's sample of a farm of 10,000
// servers, once a second (README, Capacity: the history's cost).
func BenchmarkSamples(b *testing.B) {
	r, _ := benchRegistry(b, 10_000)
	var buf []Sample
	b.ReportAllocs()
	for b.Loop() {
		buf = r.Samples(buf[:0])
	}
	if len(buf) != 10_000 {
		b.Fatalf("%d servers sampled", len(buf))
	}
}
