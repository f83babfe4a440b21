package alloc

// Open lets a gated registry place (Options.Gated): the coordinator has its
// state back. It is a no-op on a registry that places already.
func (r *Registry) Open() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gated = false
	r.updateAvailable()
}

// Gated reports whether the registry still waits for Open.
func (r *Registry) Gated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gated
}

// Unheard lists the configured servers no report has come from since start.
func (r *Registry) Unheard() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.servers {
		if !s.seen {
			out = append(out, s.name)
		}
	}
	return out
}
