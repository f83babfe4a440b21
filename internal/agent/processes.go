package agent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// settleScans is how many scans a new process's name is read again for:
// Webots starts from a launcher script that execs the simulator, so a young
// process may change its name. After that, a process keeps its answer until
// it is gone from /proc.
const settleScans = 5

// processCollector counts running simulations: processes whose name
// (/proc/<pid>/comm) is one of names. It scans at every heartbeat, so that
// a booking confirms within one interval, and reads the names of new (and
// young) processes only: /proc's listing is one getdents call.
type processCollector struct {
	root  string // /proc, or a recorded tree in tests
	names []string
	known map[string]*proc // by PID, as of the last scan
	scan  uint64
}

type proc struct {
	match bool   // its name is one of names
	age   int    // scans it was seen in
	seen  uint64 // the last scan it was seen in
}

// NewProcesses counts processes named one of names under procRoot.
func NewProcesses(procRoot string, names []string) Collector {
	return &processCollector{root: procRoot, names: names, known: map[string]*proc{}}
}

func (p *processCollector) Name() string { return "processes" }

func (p *processCollector) Collect(ctx context.Context, r *Reading) error {
	d, err := os.Open(p.root)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1) // unsorted, no stat: cheaper than ReadDir
	d.Close()
	if err != nil {
		return err
	}
	p.scan++
	n := 0
	for _, name := range names {
		if !isPID(name) {
			continue
		}
		pr := p.known[name]
		if pr == nil {
			pr = &proc{}
			p.known[name] = pr
		}
		if pr.age < settleScans {
			b, err := os.ReadFile(filepath.Join(p.root, name, "comm"))
			if err != nil {
				delete(p.known, name) // the process ended meanwhile
				continue
			}
			pr.match = slices.Contains(p.names, strings.TrimSpace(string(b)))
			pr.age++
		}
		pr.seen = p.scan
		if pr.match {
			n++
		}
	}
	for pid, pr := range p.known {
		if pr.seen != p.scan {
			delete(p.known, pid) // gone: its PID may come back as another process
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
