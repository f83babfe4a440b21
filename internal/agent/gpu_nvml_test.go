//go:build linux && (amd64 || arm64)

package agent

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// buildLibrary compiles a C file of testdata into a shared library, or skips
// where the machine has no C compiler.
func buildLibrary(t *testing.T, src string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build the NVML stand-in")
	}
	lib := filepath.Join(t.TempDir(), strings.TrimSuffix(src, ".c")+".so")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-Wall", "-Werror", "-o", lib, filepath.Join("testdata", src)).CombinedOutput(); err != nil {
		t.Fatalf("cc %s: %v\n%s", src, err, out)
	}
	return lib
}

// withLibrary points the binding at lib for one test, bound afresh.
func withLibrary(t *testing.T, lib string) {
	old := nvmlLibrary
	nvmlLibrary, nvmlOnce, nvmlBound, nvmlErr = lib, sync.Once{}, nil, nil
	t.Cleanup(func() { nvmlLibrary, nvmlOnce, nvmlBound, nvmlErr = old, sync.Once{}, nil, nil })
}

// The purego binding against a library with NVML's C interface: the calls,
// the structures' layout and the error strings cross as nvml.h has them.
func TestNVMLBinding(t *testing.T) {
	fake := buildLibrary(t, "fakenvml.c")
	tests := []struct {
		name    string
		lib     string
		init    string
		want    []GPUStat
		wantErr string
	}{
		{name: "two GPUs", lib: fake, want: []GPUStat{
			{Util: 30, MemUtil: 10, VRAMUsed: 1 << 30, VRAMTotal: 8 << 30},
			{Util: 75, MemUtil: 40, VRAMUsed: 6 << 30, VRAMTotal: 16 << 30},
		}},
		{name: "init fails", lib: fake, init: "fail", wantErr: "NVML/RM version mismatch"},
		{name: "no driver", lib: filepath.Join(t.TempDir(), "libnvidia-ml.so.1"), wantErr: "no NVIDIA GPU: NVML"},
		{name: "functions missing", lib: buildLibrary(t, "lacking.c"), wantErr: "lacks nvmlErrorString"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			withLibrary(t, tc.lib)
			t.Setenv("FAKE_NVML_INIT", tc.init)
			src, err := DetectGPU()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrNoGPU) {
					t.Fatalf("DetectGPU error = %v, want ErrNoGPU with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := src.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("Stats = %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("GPU %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			var r Reading
			if err := NewGPU(src).Collect(t.Context(), &r); err != nil {
				t.Fatal(err)
			}
			if *r.GPU != 75 || *r.GPUMemory != 40 || *r.VRAM != 37.5 {
				t.Errorf("busiest GPU read as gpu=%v gpuMemory=%v vram=%v, want 75, 40, 37.5", *r.GPU, *r.GPUMemory, *r.VRAM)
			}
		})
	}
}
