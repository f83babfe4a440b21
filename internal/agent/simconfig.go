package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/simgate/simgate/internal/schema"
)

// SimulationConfig is the simulation server's own configuration (webots-server's
// simulation.json), as far as placement needs it (PROTOCOL §1.1): what it
// runs, and how many sessions it takes. It is read again whenever the file
// changes; a file that stops parsing keeps the last good policy, said once.
type SimulationConfig struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex // guards mtime, size, sharing and maxConn (a leaf)
	mtime   time.Time
	size    int64
	sharing *schema.Sharing
	maxConn int    // maxConnections; 0: not given
	port    int    // port; 0: not given
	failing string // the last error said, "" when the file reads
}

// simulationFile is the part of simulation.json placement reads.
type simulationFile struct {
	AllowedRepositories []string `json:"allowedRepositories"`
	BlockedRepositories []string `json:"blockedRepositories"`
	Docker              bool     `json:"docker"`
	ShareIdleTime       *float64 `json:"shareIdleTime"`
	MaxConnections      int      `json:"maxConnections"`
	Port                int      `json:"port"`
}

// NewSimulationConfig reads path; a file that is not there is an error (a flag named
// it), one that does not parse is said and waited for.
func NewSimulationConfig(path string, log *slog.Logger) (*SimulationConfig, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("simulation server configuration: %w", err)
	}
	p := &SimulationConfig{path: path, log: log}
	p.refresh()
	return p, nil
}

// Sharing is the policy for the next heartbeat, read again first if the
// file changed; nil until the file has parsed once.
func (p *SimulationConfig) Sharing() *schema.Sharing {
	p.refresh()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sharing
}

// MaxConnections and Port are the file's, 0 when it gives none.
func (p *SimulationConfig) MaxConnections() int { p.mu.Lock(); defer p.mu.Unlock(); return p.maxConn }
func (p *SimulationConfig) Port() int           { p.mu.Lock(); defer p.mu.Unlock(); return p.port }

func (p *SimulationConfig) refresh() {
	fi, err := os.Stat(p.path)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && fi.ModTime().Equal(p.mtime) && fi.Size() == p.size {
		return
	}
	var f simulationFile
	if err == nil {
		p.mtime, p.size = fi.ModTime(), fi.Size()
		var data []byte
		if data, err = os.ReadFile(p.path); err == nil {
			err = json.Unmarshal(data, &f)
		}
	}
	if err == nil && f.ShareIdleTime != nil && !(*f.ShareIdleTime >= 0 && *f.ShareIdleTime <= 100) {
		err = fmt.Errorf("shareIdleTime %v is not a percentage", *f.ShareIdleTime)
	}
	if err != nil {
		if msg := err.Error(); msg != p.failing {
			p.failing = msg
			if p.sharing != nil {
				p.log.Warn("simulation server configuration unreadable: the last good policy stays", "file", p.path, "error", err)
			} else {
				// At start: heartbeats carry no policy, so the coordinator
				// sends this server every world (issue 32: it said nothing).
				p.log.Error("cannot read the simulation server's configuration: heartbeats carry no repository policy (the coordinator sends this server every world) until it can be read",
					"file", p.path, "error", err,
					"fix", "let this agent's user read the file (the unit reads it through its drop-in's BindReadOnlyPaths), fix its JSON, or give -simulation-config off")
			}
		}
		return
	}
	sh := &schema.Sharing{AllowedRepositories: f.AllowedRepositories, BlockedRepositories: f.BlockedRepositories,
		Docker: f.Docker, ShareIdleTime: f.ShareIdleTime}
	if len(sh.AllowedRepositories) == 0 {
		sh.AllowedRepositories = nil
	}
	if len(sh.BlockedRepositories) == 0 {
		sh.BlockedRepositories = nil
	}
	if p.sharing != nil || p.failing != "" {
		p.log.Info("simulation server configuration read again", "file", p.path)
	}
	p.sharing, p.maxConn, p.port, p.failing = sh, f.MaxConnections, f.Port, ""
}
