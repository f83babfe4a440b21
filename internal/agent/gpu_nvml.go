//go:build cgo && linux

package agent

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlSource reads GPUs through NVML, loaded at run time (dlopen of
// libnvidia-ml.so.1), so the agent starts on machines without a driver.
type nvmlSource struct{ devices []nvml.Device }

func openNVML() (src GPUSource, err error) {
	defer func() {
		if p := recover(); p != nil { // go-nvml panics when the library is missing on some versions
			src, err = nil, fmt.Errorf("%w: NVML: %v", ErrNoGPU, p)
		}
	}()
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("%w: NVML: %v", ErrNoGPU, nvml.ErrorString(ret))
	}
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("%w: NVML device count: %v", ErrNoGPU, nvml.ErrorString(ret))
	}
	s := &nvmlSource{}
	for i := 0; i < n; i++ {
		d, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML device %d: %v", i, nvml.ErrorString(ret))
		}
		s.devices = append(s.devices, d)
	}
	return s, nil
}

func (s *nvmlSource) Stats() ([]GPUStat, error) {
	out := make([]GPUStat, 0, len(s.devices))
	for i, d := range s.devices {
		u, ret := d.GetUtilizationRates()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML utilisation of GPU %d: %v", i, nvml.ErrorString(ret))
		}
		m, ret := d.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("NVML memory of GPU %d: %v", i, nvml.ErrorString(ret))
		}
		out = append(out, GPUStat{Util: float64(u.Gpu), MemUtil: float64(u.Memory), VRAMUsed: m.Used, VRAMTotal: m.Total})
	}
	return out, nil
}
