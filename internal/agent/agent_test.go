package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/common"

	"github.com/simgate/simgate/internal/domain"
	"github.com/simgate/simgate/internal/schema"
)

func procCtx(dir string) context.Context {
	return context.WithValue(context.Background(), common.EnvKey, common.EnvMap{common.HostProcEnvKey: dir})
}

func f(v float64) *float64 { return &v }

func TestSampleLoad(t *testing.T) {
	tests := []struct {
		name string
		r    Reading
		want float64
	}{
		{"cpu dominates", Reading{Vector: domain.Vector{CPU: f(80), Memory: f(30), Swap: f(0)}}, 80},
		{"memory average dominates", Reading{Vector: domain.Vector{CPU: f(10), Memory: f(90), Swap: f(60), GPUMemory: f(90)}}, 80},
		{"gpu dominates", Reading{Vector: domain.Vector{CPU: f(10), Memory: f(30), Swap: f(0), GPU: f(97), GPUMemory: f(20)}}, 97},
		{"no gpu: gpuMemory counts as 0", Reading{Vector: domain.Vector{CPU: f(10), Memory: f(90), Swap: f(90)}}, 60},
		{"nothing measured", Reading{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sampleLoad(tt.r); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("sampleLoad = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWindowAveragesLastFive(t *testing.T) {
	var w window
	want := []float64{10, 15, 20, 25, 30, 40, 50}
	for i, cpu := range []float64{10, 20, 30, 40, 50, 60, 70} {
		if got := w.add(Reading{Vector: domain.Vector{CPU: f(cpu)}}); got != want[i] {
			t.Errorf("after sample %d: %v, want %v", i+1, got, want[i])
		}
	}
}

func TestCPUFromRecordedProcStat(t *testing.T) {
	c := NewCPU(procCtx("testdata/proc-idle")).(*cpuCollector)
	var r Reading
	if err := c.Collect(procCtx("testdata/proc-busy"), &r); err != nil {
		t.Fatal(err)
	}
	// Between the two recordings: 600 user + 200 system busy, 150 idle + 50 iowait.
	if r.CPU == nil || math.Abs(*r.CPU-80) > 1e-9 {
		t.Errorf("cpu = %v, want 80", r.CPU)
	}
}

func TestMemoryFromRecordedMeminfo(t *testing.T) {
	var r Reading
	if err := NewMemory().Collect(procCtx("testdata/proc-idle"), &r); err != nil {
		t.Fatal(err)
	}
	if r.Memory == nil || math.Abs(*r.Memory-50) > 0.01 {
		t.Errorf("memory = %v, want 50 (MemAvailable is half)", *r.Memory)
	}
	if r.Swap == nil || math.Abs(*r.Swap-25) > 0.01 {
		t.Errorf("swap = %v, want 25", *r.Swap)
	}
}

func TestProcessesFromRecordedTree(t *testing.T) {
	var r Reading
	if err := NewProcesses("testdata/proc-tree", []string{"webots-bin"}).Collect(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Sessions == nil || *r.Sessions != 2 {
		t.Errorf("sessions = %v, want 2 (self is not a pid)", r.Sessions)
	}
}

type recordedGPU struct {
	stats []GPUStat
	err   error
}

func (g recordedGPU) Stats() ([]GPUStat, error) { return g.stats, g.err }

func TestGPUBusiestOfRecordedNVML(t *testing.T) {
	data, err := os.ReadFile("testdata/nvml-2gpu.json")
	if err != nil {
		t.Fatal(err)
	}
	var stats []GPUStat
	if err := json.Unmarshal(data, &stats); err != nil {
		t.Fatal(err)
	}
	var r Reading
	if err := NewGPU(recordedGPU{stats: stats}).Collect(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	if *r.GPU != 87 || *r.GPUMemory != 41 || *r.VRAM != 50 {
		t.Errorf("gpu %v, gpuMemory %v, vram %v; want the second GPU: 87, 41, 50", *r.GPU, *r.GPUMemory, *r.VRAM)
	}
	var none Reading
	if err := NewGPU(recordedGPU{}).Collect(context.Background(), &none); !errors.Is(err, ErrNoGPU) || none.GPU != nil {
		t.Errorf("no device: %v %v", err, none.GPU)
	}
}

func TestProbe(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "12") }))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer bad.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for name, tt := range map[string]struct {
		url  string
		fail bool
	}{"answers": {ok.URL, false}, "500": {bad.URL, true}, "refused": {gone.URL, true}} {
		t.Run(name, func(t *testing.T) {
			var r Reading
			_ = NewProbe(tt.url, time.Second).Collect(context.Background(), &r)
			if !r.ServiceChecked || (r.ServiceErr != nil) != tt.fail {
				t.Errorf("checked %v, err %v; want failure %v", r.ServiceChecked, r.ServiceErr, tt.fail)
			}
		})
	}
	if got := DefaultProbeURL("cyberbotics1.epfl.ch/2000"); got != "http://127.0.0.1:2000/load" {
		t.Errorf("DefaultProbeURL = %q", got)
	}
	if got := DefaultProbeURL("localhost:2001"); got != "http://127.0.0.1:2001/load" {
		t.Errorf("DefaultProbeURL = %q", got)
	}
}

type fixed struct{ r Reading }

func (fixed) Name() string { return "fixed" }
func (c fixed) Collect(_ context.Context, r *Reading) error {
	*r = c.r
	return nil
}

func TestBeat(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	up := Reading{Vector: domain.Vector{CPU: f(40), Memory: f(30), Swap: f(0)}}
	a := New(Options{Server: "a/1", Collectors: []Collector{fixed{up}}, MaxSessions: 10, Logger: quiet})
	hb := a.Beat(context.Background())
	if hb.Status != schema.StatusUp || hb.Load != 40 || hb.GPU != nil || hb.VRAM != nil || *hb.MaxSessions != 10 {
		t.Errorf("%+v", hb)
	}
	data, _ := hb.Encode()
	if _, err := schema.Decode(data); err != nil {
		t.Errorf("an agent's heartbeat must pass the coordinator's checks: %v", err)
	}
	var raw map[string]any
	_ = json.Unmarshal(data, &raw)
	for _, k := range []string{"gpu", "gpuMemory", "vram"} {
		if _, ok := raw[k]; ok {
			t.Errorf("%s present on a machine without GPU", k)
		}
	}

	down := up
	down.ServiceChecked, down.ServiceErr = true, errors.New("connection refused")
	a = New(Options{Server: "a/1", Collectors: []Collector{fixed{down}}, Logger: quiet})
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusServiceDown || hb.Probe == "" {
		t.Errorf("failing probe: %+v", hb)
	}
	a = New(Options{Server: "a/1", Collectors: []Collector{fixed{down}}, Logger: quiet, Advisory: true})
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusUp || hb.Probe == "" {
		t.Errorf("advisory probe: %+v", hb)
	}

	drain := filepath.Join(t.TempDir(), "drain")
	a = New(Options{Server: "a/1", Collectors: []Collector{fixed{up}}, Logger: quiet, DrainFile: drain})
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusUp {
		t.Errorf("no drain file: %s", hb.Status)
	}
	_ = os.WriteFile(drain, nil, 0o600)
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusDraining {
		t.Errorf("drain file: %s", hb.Status)
	}
	// USR2 undrains although the file is still there: the latest event wins.
	a.SetDraining(false)
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusUp {
		t.Errorf("SetDraining(false) with the drain file present: %s", hb.Status)
	}
	_ = os.Remove(drain)
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusUp {
		t.Errorf("drain file removed: %s", hb.Status)
	}
	a.SetDraining(true)
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusDraining {
		t.Errorf("SetDraining: %s", hb.Status)
	}
	_ = os.WriteFile(drain, nil, 0o600)
	_ = a.Beat(context.Background())
	_ = os.Remove(drain)
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusUp {
		t.Errorf("removing the file undrains, whatever drained it: %s", hb.Status)
	}
	// A file present at start drains.
	_ = os.WriteFile(drain, nil, 0o600)
	a = New(Options{Server: "a/1", Collectors: []Collector{fixed{up}}, Logger: quiet, DrainFile: drain})
	if hb := a.Beat(context.Background()); hb.Status != schema.StatusDraining {
		t.Errorf("drain file at start: %s", hb.Status)
	}
}
