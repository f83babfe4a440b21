//go:build linux && (amd64 || arm64)

package agent

import (
	"fmt"
	"sync"

	"github.com/ebitengine/purego"
)

// nvmlLibrary is the NVIDIA driver's management library, loaded at run
// time so that the agent starts, and builds, on machines without a driver.
// Tests point it at a stand-in built from testdata/fakenvml.c.
var nvmlLibrary = "libnvidia-ml.so.1"

// The NVML C structures the agent reads (nvml.h: nvmlUtilization_t and
// nvmlMemory_t).
type (
	nvmlUtilization struct{ GPU, Memory uint32 }
	nvmlMemory      struct{ Total, Free, Used uint64 }
)

const nvmlSuccess = 0

// nvmlAPI is the part of NVML the agent calls, bound with purego: no cgo,
// so the build needs no C compiler and prints none of nvml.h's deprecation
// warnings.
type nvmlAPI struct {
	init        func() int32
	errorString func(ret int32) string
	count       func(n *uint32) int32
	handle      func(i uint32, dev *uintptr) int32
	utilisation func(dev uintptr, u *nvmlUtilization) int32
	memory      func(dev uintptr, m *nvmlMemory) int32
}

var (
	nvmlOnce  sync.Once
	nvmlBound *nvmlAPI
	nvmlErr   error
)

// bindNVML loads the library and its functions once per process.
func bindNVML() (*nvmlAPI, error) {
	nvmlOnce.Do(func() {
		lib, err := purego.Dlopen(nvmlLibrary, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			nvmlErr = fmt.Errorf("%w: NVML: %v", ErrNoGPU, err)
			return
		}
		api := &nvmlAPI{}
		for _, f := range []struct {
			fptr any
			name string
		}{
			{&api.init, "nvmlInit_v2"},
			{&api.errorString, "nvmlErrorString"},
			{&api.count, "nvmlDeviceGetCount_v2"},
			{&api.handle, "nvmlDeviceGetHandleByIndex_v2"},
			{&api.utilisation, "nvmlDeviceGetUtilizationRates"},
			{&api.memory, "nvmlDeviceGetMemoryInfo"},
		} {
			sym, err := purego.Dlsym(lib, f.name)
			if err != nil {
				nvmlErr = fmt.Errorf("%w: NVML in %s lacks %s: %v", ErrNoGPU, nvmlLibrary, f.name, err)
				return
			}
			purego.RegisterFunc(f.fptr, sym)
		}
		nvmlBound = api
	})
	return nvmlBound, nvmlErr
}

// maxGPUs bounds the devices read: no machine holds more.
const maxGPUs = 64

// nvmlSource reads every GPU NVML sees.
type nvmlSource struct {
	api     *nvmlAPI
	devices []uintptr
}

func openNVML() (GPUSource, error) {
	api, err := bindNVML()
	if err != nil {
		return nil, err
	}
	if ret := api.init(); ret != nvmlSuccess {
		return nil, fmt.Errorf("%w: NVML: %s", ErrNoGPU, api.errorString(ret))
	}
	var n uint32
	if ret := api.count(&n); ret != nvmlSuccess {
		return nil, fmt.Errorf("%w: NVML device count: %s", ErrNoGPU, api.errorString(ret))
	}
	if n > maxGPUs {
		// A broken driver's count (issue 31: an absurd one ran the agent
		// out of memory): read the first maxGPUs, which no machine exceeds.
		n = maxGPUs
	}
	s := &nvmlSource{api: api}
	for i := uint32(0); i < n; i++ {
		var d uintptr
		if ret := api.handle(i, &d); ret != nvmlSuccess {
			return nil, fmt.Errorf("NVML device %d: %s", i, api.errorString(ret))
		}
		s.devices = append(s.devices, d)
	}
	return s, nil
}

func (s *nvmlSource) Stats() ([]GPUStat, error) {
	out := make([]GPUStat, 0, len(s.devices))
	for i, d := range s.devices {
		var u nvmlUtilization
		if ret := s.api.utilisation(d, &u); ret != nvmlSuccess {
			return nil, fmt.Errorf("NVML utilisation of GPU %d: %s", i, s.api.errorString(ret))
		}
		var m nvmlMemory
		if ret := s.api.memory(d, &m); ret != nvmlSuccess {
			return nil, fmt.Errorf("NVML memory of GPU %d: %s", i, s.api.errorString(ret))
		}
		out = append(out, GPUStat{Util: float64(u.GPU), MemUtil: float64(u.Memory), VRAMUsed: m.Used, VRAMTotal: m.Total})
	}
	return out, nil
}
