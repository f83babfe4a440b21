package agent

import (
	"context"
	"errors"
	"fmt"
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
// nil and the reason.
func DetectGPU() (GPUSource, error) {
	src, err := openNVML()
	if err != nil {
		return nil, err
	}
	stats, err := src.Stats()
	if err != nil {
		return nil, err
	}
	if len(stats) == 0 {
		return nil, fmt.Errorf("%w: NVML sees no device", ErrNoGPU)
	}
	return src, nil
}
