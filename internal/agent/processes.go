package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// processCollector counts running simulations: processes whose name
// (/proc/<pid>/comm) is one of names.
type processCollector struct {
	root  string // /proc, or a recorded tree in tests
	names []string
}

// NewProcesses counts processes named one of names under procRoot.
func NewProcesses(procRoot string, names []string) Collector {
	return &processCollector{root: procRoot, names: names}
}

func (p *processCollector) Name() string { return "processes" }

func (p *processCollector) Collect(ctx context.Context, r *Reading) error {
	entries, err := os.ReadDir(p.root)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() || !isPID(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.root, e.Name(), "comm"))
		if err != nil {
			continue // the process ended meanwhile
		}
		if slices.Contains(p.names, strings.TrimSpace(string(b))) {
			n++
		}
	}
	r.Sessions = ptr(n)
	return nil
}

func isPID(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
