package agent

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// GPUStat is one NVIDIA GPU's utilisation, as NVML reports it.
type GPUStat struct {
	Util      float64 // compute utilisation, percent
	MemUtil   float64 // memory-controller utilisation, percent
	VRAMUsed  uint64  // bytes
	VRAMTotal uint64  // bytes
}

// GPUSource reads every GPU of the machine. NVML is the real one; tests and
// machines without a GPU use others. It is the one edge faked in tests.
type GPUSource interface {
	Stats() ([]GPUStat, error)
}

// ErrNoGPU says the machine has no GPU to measure (no driver, no device).
var ErrNoGPU = errors.New("no NVIDIA GPU")

// gpuCollector reports the busiest GPU of a multi-GPU machine: the one with
// the highest load by the agent's formula.
type gpuCollector struct{ src GPUSource }

// NewGPU returns a collector over src.
func NewGPU(src GPUSource) Collector { return &gpuCollector{src: src} }

func (g *gpuCollector) Name() string { return "gpu" }

func (g *gpuCollector) Collect(ctx context.Context, r *Reading) error {
	stats, err := g.src.Stats()
	if err != nil {
		return err
	}
	if len(stats) == 0 {
		return ErrNoGPU
	}
	best, bestLoad := -1, -1.0
	for i, s := range stats {
		if l := max(s.Util, s.MemUtil/3, vramPct(s)); l > bestLoad {
			best, bestLoad = i, l
		}
	}
	s := stats[best]
	r.GPU = ptr(clampPct(s.Util))
	r.GPUMemory = ptr(clampPct(s.MemUtil))
	r.VRAM = ptr(vramPct(s))
	return nil
}

func vramPct(s GPUStat) float64 {
	if s.VRAMTotal == 0 {
		return 0
	}
	return clampPct(100 * float64(s.VRAMUsed) / float64(s.VRAMTotal))
}

// DetectGPU returns NVML when a driver and at least one GPU answer, else
// nil and the reason. A driver that does not answer within gpuDeadline is
// no GPU (issue 31: an nvmlInit that never returned kept the agent from
// ever beating, and from stopping on SIGTERM).
func DetectGPU() (GPUSource, error) {
	return detectWithin(openNVML, gpuDeadline)
}

// gpuDeadline bounds every call into the GPU's driver.
const gpuDeadline = time.Second

// ErrGPUHung says the GPU's driver did not answer in time.
var ErrGPUHung = errors.New("the GPU's driver does not answer")

// detectWithin opens a GPU source with open and reads it once, within d.
func detectWithin(open func() (GPUSource, error), d time.Duration) (GPUSource, error) {
	type result struct {
		src GPUSource
		err error
	}
	done := make(chan result, 1) // the call may outlive us: it never blocks on sending
	go func() {
		src, err := open()
		if err == nil {
			var stats []GPUStat
			if stats, err = src.Stats(); err == nil && len(stats) == 0 {
				err = fmt.Errorf("%w: NVML sees no device", ErrNoGPU)
			}
		}
		done <- result{src, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		return &deadlined{src: r.src, d: d}, nil
	case <-time.After(d):
		return nil, fmt.Errorf("%w: %w within %v: GPU unknown, heartbeats go without it", ErrNoGPU, ErrGPUHung, d)
	}
}

// pending is a GPU source being detected: until detection ends its reads
// fail with errGPUPending, which the agent does not log; then they are
// the detected source's, or detection's error.
type pending struct {
	done chan struct{}
	src  GPUSource
	err  error
}

// detecting starts detect and returns the source it will give.
func detecting(detect func() (GPUSource, error)) *pending {
	p := &pending{done: make(chan struct{})}
	go func() {
		p.src, p.err = detect()
		close(p.done)
	}()
	return p
}

func (p *pending) Stats() ([]GPUStat, error) {
	select {
	case <-p.done:
	default:
		return nil, errGPUPending
	}
	if p.err != nil {
		return nil, p.err
	}
	return p.src.Stats()
}

// errGPUPending says the GPU is still being detected.
var errGPUPending = errors.New("the GPU is being detected")

// deadlined reads src within d; while a call that timed out has not
// returned, the next ones fail at once rather than pile up.
type deadlined struct {
	src  GPUSource
	d    time.Duration
	busy atomic.Bool
}

func (g *deadlined) Stats() ([]GPUStat, error) {
	if !g.busy.CompareAndSwap(false, true) {
		return nil, errGPUUnknown // the last call still waits
	}
	type result struct {
		stats []GPUStat
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stats, err := g.src.Stats()
		g.busy.Store(false)
		done <- result{stats, err}
	}()
	select {
	case r := <-done:
		return r.stats, r.err
	case <-time.After(g.d):
		return nil, errGPUUnknown
	}
}

// errGPUUnknown is one error for every call a hung driver fails: the
// agent logs a collector's failure once, and again only when it changes.
var errGPUUnknown = fmt.Errorf("%w: GPU unknown until it does", ErrGPUHung)
