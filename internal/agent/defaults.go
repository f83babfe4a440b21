package agent

import (
	"context"
	"log/slog"
	"time"
)

// DefaultProcessNames are the process names of a running Webots simulation.
var DefaultProcessNames = []string{"webots-bin"}

// DefaultCollectors measures CPU, RAM and swap, the GPU when NVML finds one,
// running Webots processes, and the simulation server at probeURL ("" or
// "off": no probe).
func DefaultCollectors(ctx context.Context, probeURL string, processNames []string, log *slog.Logger) []Collector {
	// The GPU is detected beside the first heartbeats, not before them: a
	// driver that takes its time (up to gpuDeadline) holds none of them.
	// A machine without one is said once, by the agent (ErrNoGPU).
	cs := []Collector{NewCPU(ctx), NewMemory(), NewGPU(detecting(DetectGPU))}
	cs = append(cs, NewProcesses("/proc", processNames))
	if probeURL != "" && probeURL != "off" {
		cs = append(cs, NewProbe(probeURL, 2*time.Second))
		log.Info("probing the simulation server", "url", probeURL)
	} else {
		log.Info("simulation-server probe is off")
	}
	return cs
}
