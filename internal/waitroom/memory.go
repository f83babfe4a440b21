package waitroom

import "sync"

// Memory is the line's store for a lone coordinator: the entries in this
// process, each change told to the line at once.
type Memory struct {
	line *Line
	mu   sync.Mutex // guards rev and m; released before the line is told
	rev  uint64
	m    map[string]Entry
}

// NewMemory is an empty store telling line of its changes.
func NewMemory(line *Line) *Memory { return &Memory{line: line, m: map[string]Entry{}} }

// Create adds e.
func (s *Memory) Create(e Entry) (uint64, error) {
	s.mu.Lock()
	s.rev++
	e.Seq, e.Rev = s.rev, s.rev
	s.m[e.Ticket] = e
	s.mu.Unlock()
	s.line.Apply(e)
	return e.Rev, nil
}

// Claim makes owner the owner of seen's ticket, once.
func (s *Memory) Claim(seen Entry, owner string) (Entry, bool, error) {
	s.mu.Lock()
	ticket := seen.Ticket
	e, ok := s.m[ticket]
	if !ok || e.Owner != "" || e.Rev != seen.Rev {
		s.mu.Unlock()
		return Entry{}, false, nil
	}
	s.rev++
	e.Owner, e.Rev = owner, s.rev
	s.m[ticket] = e
	s.mu.Unlock()
	s.line.Apply(e)
	return e, true, nil
}

// Put writes e.
func (s *Memory) Put(e Entry) (uint64, error) {
	s.mu.Lock()
	s.rev++
	e.Rev = s.rev
	s.m[e.Ticket] = e
	s.mu.Unlock()
	s.line.Apply(e)
	return e.Rev, nil
}

// Delete removes ticket.
func (s *Memory) Delete(ticket string) error {
	s.mu.Lock()
	_, ok := s.m[ticket]
	delete(s.m, ticket)
	s.rev++
	rev := s.rev
	s.mu.Unlock()
	if ok {
		s.line.Remove(ticket, rev)
	}
	return nil
}
