package agent

import "context"

// Fixed reports a constant CPU, memory and swap: the config-free start's
// in-process agent is a demonstration on a machine that may be busy with
// anything (a CI job, a desktop), and its farm should place at once. A
// real deployment measures (localAgent in a configuration file).
type Fixed struct{ Load float64 }

// Name is the collector's name.
func (Fixed) Name() string { return "fixed" }

// Collect fills CPU, memory and swap with the fixed load.
func (f Fixed) Collect(_ context.Context, r *Reading) error {
	r.CPU, r.Memory, r.Swap = ptr(f.Load), ptr(f.Load), ptr(0.0)
	return nil
}
