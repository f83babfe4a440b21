package alloc

// heap is a binary min-heap of servers by effective load, ties broken by a
// random key drawn at each change, so that equal servers share a burst.
type heap []*server

func (h heap) less(i, j int) bool {
	if h[i].eff != h[j].eff {
		return h[i].eff < h[j].eff
	}
	return h[i].tie < h[j].tie
}

func (h heap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (h *heap) push(s *server) {
	s.heapIdx = len(*h)
	*h = append(*h, s)
	h.up(s.heapIdx)
}

func (h *heap) remove(i int) {
	n := len(*h) - 1
	if i != n {
		h.swap(i, n)
	}
	s := (*h)[n]
	(*h)[n] = nil
	*h = (*h)[:n]
	s.heapIdx = -1
	if i != n {
		h.fix(i)
	}
}

func (h heap) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h heap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h heap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
