package opsapi

import (
	"encoding/json"
	"fmt"
	"strconv"
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

// page returns page k (1-based) of doc split under limit bytes, and the
// number of pages; k out of range is an error.
func page(doc []byte, limit, k int) ([]byte, int, error) {
	if len(doc) <= limit {
		if k > 1 {
			return nil, 1, fmt.Errorf("page %d of 1", k)
		}
		return doc, 1, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil {
		return nil, 0, err
	}
	var servers []json.RawMessage
	if err := json.Unmarshal(fields["servers"], &servers); err != nil {
		return nil, 0, err
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
	if k < 1 || k > n {
		return nil, n, fmt.Errorf("page %d of %d", k, n)
	}
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
	return data, n, err
}
