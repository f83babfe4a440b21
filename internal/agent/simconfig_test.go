package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/domain"
)

// TestPolicyFromSimulationConfig reads webots-server's own file (the seed's
// cyberbotics1.json), follows a change, and keeps the last good policy when
// the file stops parsing.
func TestPolicyFromSimulationConfig(t *testing.T) {
	seed, err := os.ReadFile(filepath.Join("testdata", "simulation", "cyberbotics1.json"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "simulation.json")
	write := func(data string, age time.Duration) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		// A distinct modification time for each version, whatever the clock's grain.
		mt := time.Now().Add(-age)
		if err := os.Chtimes(path, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	write(string(seed), 3*time.Hour)
	p, err := NewSimulationConfig(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sh := p.Sharing()
	if sh == nil || sh.Docker || sh.AllowedRepositories != nil || sh.ShareIdleTime != nil || p.Port() != 2000 {
		t.Fatalf("the seed's file: %+v, port %d", sh, p.Port())
	}

	write(`{"port": 2000, "docker": true, "shareIdleTime": 30, "maxConnections": 12,
		"allowedRepositories": ["https://github.com/cyberbotics/"], "blockedRepositories": ["https://github.com/evil/"]}`, 2*time.Hour)
	sh = p.Sharing()
	if sh == nil || !sh.Docker || *sh.ShareIdleTime != 30 || sh.AllowedRepositories[0] != "https://github.com/cyberbotics/" ||
		sh.BlockedRepositories[0] != "https://github.com/evil/" || p.MaxConnections() != 12 {
		t.Fatalf("after a change: %+v, maxConnections %d", sh, p.MaxConnections())
	}

	write(`{"docker": tru`, time.Hour)
	if again := p.Sharing(); again != sh {
		t.Errorf("a broken file replaced the last good policy: %+v", again)
	}

	// The heartbeat carries it, and the latest single sample.
	a := New(Options{Server: "a/2000", Collectors: []Collector{fixed{Reading{Vector: domain.Vector{CPU: ptr(40.0)}, ServiceChecked: true}}},
		SimulationConfig: p, Logger: slog.New(slog.DiscardHandler)})
	hb := a.Beat(context.Background())
	if hb.Sharing != sh || hb.InstantLoad == nil || *hb.InstantLoad != 40 {
		t.Errorf("heartbeat: sharing %+v, instantLoad %v", hb.Sharing, hb.InstantLoad)
	}
	if _, err := NewSimulationConfig(filepath.Join(t.TempDir(), "missing.json"), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a missing file named by the flag was accepted")
	}
}

// TestUnreadableSimulationConfigAtStart: issue 32. A file the agent cannot
// parse at start gives no policy and one ERROR line that says so, naming
// the file and the fix.
func TestUnreadableSimulationConfigAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "simulation.json")
	if err := os.WriteFile(path, []byte(`{"allowedRepositories": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	log := slog.New(slog.NewTextHandler(&out, nil))
	p, err := NewSimulationConfig(path, log)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sharing() != nil {
		t.Error("a policy from a file that does not parse")
	}
	got := out.String()
	if strings.Count(got, "level=ERROR") != 1 || !strings.Contains(got, "no repository policy") || !strings.Contains(got, path) || !strings.Contains(got, "fix=") {
		t.Errorf("log:\n%s", got)
	}
}
