package agent

import (
	"context"
	"fmt"

	"github.com/shirou/gopsutil/v4/cpu"
)

// cpuCollector measures CPU use over the time since its previous call, from
// /proc/stat totals, so that no sample reads as gopsutil's first-call zero.
type cpuCollector struct {
	times func(ctx context.Context) (cpu.TimesStat, error)
	prev  cpu.TimesStat
	have  bool
}

// NewCPU returns the CPU collector; ctx may carry gopsutil's HOST_PROC override.
func NewCPU(ctx context.Context) Collector {
	c := &cpuCollector{times: func(ctx context.Context) (cpu.TimesStat, error) {
		t, err := cpu.TimesWithContext(ctx, false)
		if err != nil {
			return cpu.TimesStat{}, err
		}
		if len(t) == 0 {
			return cpu.TimesStat{}, fmt.Errorf("no CPU totals in /proc/stat")
		}
		return t[0], nil
	}}
	if t, err := c.times(ctx); err == nil { // prime, so the first sample covers one interval
		c.prev, c.have = t, true
	}
	return c
}

func (c *cpuCollector) Name() string { return "cpu" }

func (c *cpuCollector) Collect(ctx context.Context, r *Reading) error {
	t, err := c.times(ctx)
	if err != nil {
		return err
	}
	prev, had := c.prev, c.have
	c.prev, c.have = t, true
	if !had {
		return nil
	}
	r.CPU = ptr(busyPercent(prev, t))
	return nil
}

// busyPercent is the share of non-idle time between two /proc/stat totals.
func busyPercent(a, b cpu.TimesStat) float64 {
	idle := func(t cpu.TimesStat) float64 { return t.Idle + t.Iowait }
	// Guest time is already counted in user and nice.
	total := func(t cpu.TimesStat) float64 {
		return t.User + t.Nice + t.System + t.Idle + t.Iowait + t.Irq + t.Softirq + t.Steal
	}
	dt := total(b) - total(a)
	if dt <= 0 {
		return 0
	}
	return clampPct(100 * (dt - (idle(b) - idle(a))) / dt)
}
