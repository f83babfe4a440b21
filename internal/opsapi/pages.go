package opsapi

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
)

// The embedded server's payload limit (a heartbeat's 4 KiB) holds the
// servers document of about 9 servers: a bigger farm's answer was dropped
// without a word. It is answered in pages, each under the limit: the
// whole document when it fits (what /api/servers says, byte for byte),
// else {"servers":[…],"page":K,"pages":N} with the document's other fields
// on the first page; the request's data {"page":K} asks for page K.

// pageRequest is what simgate.api.servers may be asked with.
type pageRequest struct {
	Page int `json:"page"`
}

// pager keeps the pages of the last document split: a monitor paging in a
// loop (65 requests a second) parsed the whole document for every page and
// halved /session's throughput (issue 31). The document is the farm feed's,
// the same bytes until it is rebuilt (at most every 250 ms): it is split
// once per change.
type pager struct {
	mu    sync.Mutex // guards doc and pages (a leaf)
	doc   []byte
	pages [][]byte
}

// page returns page k (1-based) of doc split under limit bytes, and the
// number of pages; k out of range is an error.
func (p *pager) page(doc []byte, limit, k int) ([]byte, int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !sameBytes(p.doc, doc) {
		pages, err := split(doc, limit)
		if err != nil {
			return nil, 0, err
		}
		p.doc, p.pages = doc, pages
	}
	n := len(p.pages)
	if k < 1 || k > n {
		return nil, n, fmt.Errorf("page %d of %d", k, n)
	}
	return p.pages[k-1], n, nil
}

// sameBytes reports whether a and b are the same slice (not merely equal):
// the feed hands out one document until it changes.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// split cuts doc into pages under limit bytes.
func split(doc []byte, limit int) ([][]byte, error) {
	if len(doc) <= limit {
		return [][]byte{doc}, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil {
		return nil, err
	}
	var servers []json.RawMessage
	if err := json.Unmarshal(fields["servers"], &servers); err != nil {
		return nil, err
	}
	delete(fields, "servers")
	rest := 0 // the other fields, on page 1
	for name, v := range fields {
		rest += len(name) + len(v) + 4
	}
	const overhead = 64 // {"servers":[],"page":K,"pages":N}
	var bounds []int    // the first server of each page
	size := overhead + rest
	for i, s := range servers {
		if i == 0 || size+len(s)+1 > limit {
			bounds = append(bounds, i)
			size = overhead
			if len(bounds) == 1 {
				size += rest
			}
		}
		size += len(s) + 1
	}
	if len(bounds) == 0 {
		bounds = []int{0}
	}
	n := len(bounds)
	pages := make([][]byte, n)
	for k := 1; k <= n; k++ {
		end := len(servers)
		if k < n {
			end = bounds[k]
		}
		out := map[string]json.RawMessage{}
		if k == 1 {
			for name, v := range fields {
				out[name] = v
			}
		}
		list, _ := json.Marshal(servers[bounds[k-1]:end])
		out["servers"] = list
		out["page"] = json.RawMessage(strconv.Itoa(k))
		out["pages"] = json.RawMessage(strconv.Itoa(n))
		data, err := json.Marshal(out)
		if err != nil {
			return nil, err
		}
		pages[k-1] = data
	}
	return pages, nil
}
