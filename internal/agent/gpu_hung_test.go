package agent

import (
	"errors"
	"testing"
	"time"
)

// hungGPU is a driver that never answers (issue 31's nvmlInit).
type hungGPU struct{ release chan struct{} }

func (h hungGPU) Stats() ([]GPUStat, error) {
	<-h.release
	return []GPUStat{{Util: 50}}, nil
}

// TestHungGPUDriver: a driver whose calls never return makes the GPU
// unknown within the deadline, at detection and at each sample, and calls
// do not pile up behind a hung one.
func TestHungGPUDriver(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	const d = 50 * time.Millisecond
	begin := time.Now()
	_, err := detectWithin(func() (GPUSource, error) { <-release; return nil, errors.New("released") }, d)
	if !errors.Is(err, ErrNoGPU) || !errors.Is(err, ErrGPUHung) {
		t.Fatalf("a hung init: %v, want no GPU (hung)", err)
	}
	if took := time.Since(begin); took > 10*d {
		t.Errorf("a hung init held detection %v", took)
	}
	// A driver that answered once, then hangs.
	src, err := detectWithin(func() (GPUSource, error) { return fixedGPU{}, nil }, d)
	if err != nil {
		t.Fatal(err)
	}
	g := src.(*deadlined)
	g.src = hungGPU{release: release}
	if _, err := g.Stats(); !errors.Is(err, ErrGPUHung) {
		t.Fatalf("a hung sample: %v", err)
	}
	begin = time.Now()
	for range 100 {
		if _, err := g.Stats(); !errors.Is(err, ErrGPUHung) {
			t.Fatalf("behind a hung sample: %v", err)
		}
	}
	if took := time.Since(begin); took > 10*d {
		t.Errorf("100 samples behind a hung one took %v: they waited", took)
	}
}

type fixedGPU struct{}

func (fixedGPU) Stats() ([]GPUStat, error) { return []GPUStat{{Util: 10}}, nil }

// TestGPUDetectedBesideTheHeartbeats: detection runs beside the
// heartbeats: until it ends, reads say "pending" at once (and the agent
// says nothing of it); then they are the detected source's, or its error.
func TestGPUDetectedBesideTheHeartbeats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		src     GPUSource
		err     error
		wantErr error
	}{
		{name: "a GPU", src: fixedGPU{}},
		{name: "none", err: ErrNoGPU, wantErr: ErrNoGPU},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			p := detecting(func() (GPUSource, error) { <-release; return tc.src, tc.err })
			if _, err := p.Stats(); !errors.Is(err, errGPUPending) {
				t.Fatalf("during detection: %v, want pending", err)
			}
			close(release)
			<-p.done
			stats, err := p.Stats()
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && len(stats) != 1) {
				t.Errorf("after detection: %v %v, want %v", stats, err, tc.wantErr)
			}
		})
	}
}
