package agent

import (
	"context"

	"github.com/shirou/gopsutil/v4/mem"
)

// memoryCollector reads RAM and swap use from /proc/meminfo.
type memoryCollector struct{}

// NewMemory returns the RAM and swap collector.
func NewMemory() Collector { return memoryCollector{} }

func (memoryCollector) Name() string { return "memory" }

func (memoryCollector) Collect(ctx context.Context, r *Reading) error {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return err
	}
	r.Memory = ptr(clampPct(vm.UsedPercent))
	// Swap from the same read of /proc/meminfo: one file per sample.
	swap := 0.0
	if vm.SwapTotal > 0 {
		swap = clampPct(100 * float64(vm.SwapTotal-vm.SwapFree) / float64(vm.SwapTotal))
	}
	r.Swap = ptr(swap)
	return nil
}
