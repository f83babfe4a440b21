//go:build !linux || !(amd64 || arm64)

package agent

import "fmt"

func openNVML() (GPUSource, error) {
	return nil, fmt.Errorf("%w: NVML is read on linux/amd64 and linux/arm64 only", ErrNoGPU)
}
