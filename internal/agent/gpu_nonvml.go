//go:build !cgo || !linux

package agent

import "fmt"

func openNVML() (GPUSource, error) {
	return nil, fmt.Errorf("%w: this agent was built without NVML support (cgo off)", ErrNoGPU)
}
