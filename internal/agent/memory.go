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
	sw, err := mem.SwapMemoryWithContext(ctx)
	if err != nil {
		return err
	}
	swap := 0.0
	if sw.Total > 0 {
		swap = clampPct(sw.UsedPercent)
	}
	r.Swap = ptr(swap)
	return nil
}
