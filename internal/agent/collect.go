// Package agent measures one simulation machine and publishes its
// heartbeats. Each measurement is a Collector in its own file, on the model
// of node_exporter: a missing source (no GPU) is a normal case handled in
// the collector, not an error that stops the agent.
package agent

import (
	"context"

	"github.com/simgate/simgate/internal/domain"
)

// Reading is one sample of the machine. nil fields were not measured.
type Reading struct {
	domain.Vector
	Sessions       *int
	ServiceErr     error // the simulation server's probe failed
	ServiceChecked bool
}

// Collector fills its part of a Reading.
type Collector interface {
	Name() string
	Collect(ctx context.Context, r *Reading) error
}

func ptr[T any](v T) *T { return &v }

// clampPct keeps a measured percentage inside [0, 100]; counters can wrap or
// jitter a hair outside it.
func clampPct(v float64) float64 {
	if !(v >= 0) { // NaN too
		return 0
	}
	if v > 100 {
		return 100
	}
	return v
}
