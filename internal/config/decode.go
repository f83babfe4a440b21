package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// field binds one key of a JSON object to a setter that checks the value's type.
type field struct {
	key string
	set func(key string, raw []byte) error
}

// jsonKind names the JSON type of a raw value, for error messages.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '[':
		return "an array"
	case '{':
		return "an object"
	}
	return "a number"
}

func typeErr(key, want string, raw []byte) error {
	return &Error{Key: key, Msg: fmt.Sprintf("want %s, got %s (%s)", want, jsonKind(raw), shown(raw))}
}

func stringVal(dst *string) func(string, []byte) error {
	return func(key string, raw []byte) error {
		if jsonKind(raw) != "a string" || json.Unmarshal(raw, dst) != nil {
			return typeErr(key, "a string", raw)
		}
		return nil
	}
}

func boolVal(dst *bool) func(string, []byte) error {
	return func(key string, raw []byte) error {
		if jsonKind(raw) != "a boolean" || json.Unmarshal(raw, dst) != nil {
			return typeErr(key, "a boolean (true or false, without quotes)", raw)
		}
		return nil
	}
}

func floatVal(dst *float64) func(string, []byte) error {
	return func(key string, raw []byte) error {
		var f float64
		if jsonKind(raw) != "a number" || json.Unmarshal(raw, &f) != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return typeErr(key, "a number", raw)
		}
		*dst = f
		return nil
	}
}

func intVal(dst *int) func(string, []byte) error {
	return func(key string, raw []byte) error {
		var f float64
		if jsonKind(raw) != "a number" || json.Unmarshal(raw, &f) != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
			return typeErr(key, "a whole number", raw)
		}
		*dst = int(f)
		return nil
	}
}

func secondsVal(dst *time.Duration) func(string, []byte) error {
	return func(key string, raw []byte) error {
		var f float64
		if err := floatVal(&f)(key, raw); err != nil {
			return typeErr(key, "a number of seconds", raw)
		}
		if f < 0 || f > 365*24*3600 {
			return &Error{Key: key, Msg: fmt.Sprintf("%v seconds is out of range", f)}
		}
		*dst = time.Duration(f * float64(time.Second))
		return nil
	}
}

func stringsVal(dst *[]string) func(string, []byte) error {
	return func(key string, raw []byte) error {
		var v []string
		if jsonKind(raw) != "an array" || json.Unmarshal(raw, &v) != nil {
			return typeErr(key, "an array of strings", raw)
		}
		*dst = v
		return nil
	}
}

// legacyBoolVal reads one of the original's boolean keys as its Python did
// ("if config['ssl']"): false, null, 0, "", [] and {} are false, every other
// value true. Anything but true or false is read that way with a warning
// that says what it was read as.
func legacyBoolVal(dst *bool, warnings *[]string) func(string, []byte) error {
	return func(key string, raw []byte) error {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return typeErr(key, "a boolean (true or false, without quotes)", raw)
		}
		if b, ok := v.(bool); ok {
			*dst = b
			return nil
		}
		truth := truthy(v)
		*dst = truth
		msg := fmt.Sprintf("key %q: %s is %s, read as %v as the original read it; write %v, without quotes",
			key, shown(raw), jsonKind(raw), truth, truth)
		if str, ok := v.(string); ok && truth && looksFalse(str) {
			msg = fmt.Sprintf("key %q: %s is a non-empty string, which the original read as TRUE, and so does simgate; write false, without quotes, if false is meant",
				key, shown(raw))
		}
		*warnings = append(*warnings, msg)
		return nil
	}
}

// truthy is Python's truth of a decoded JSON value.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

func looksFalse(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "false", "0", "no", "off", "none", "null":
		return true
	}
	return false
}

// legacyPortVal reads one of the original's port keys: the original handed
// it to the socket library, which also takes a string of digits ("587");
// that is read as the number, with a warning.
func legacyPortVal(dst *int, warnings *[]string) func(string, []byte) error {
	return func(key string, raw []byte) error {
		var str string
		if jsonKind(raw) != "a string" || json.Unmarshal(raw, &str) != nil {
			if err := intVal(dst)(key, raw); err != nil {
				return typeErr(key, "a port number", raw)
			}
			return nil
		}
		n, err := strconv.Atoi(str)
		if err != nil || n < 0 || strings.TrimLeft(str, "0123456789") != "" {
			return typeErr(key, "a port number", raw)
		}
		*dst = n
		*warnings = append(*warnings, fmt.Sprintf("key %q: %s is a string, read as the number %d as the original read it; write %d, without quotes", key, shown(raw), n, n))
		return nil
	}
}

func shown(raw []byte) string {
	s := string(bytes.TrimSpace(raw))
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func obsolete(warnings *[]string) func(string, []byte) error {
	return func(key string, _ []byte) error {
		*warnings = append(*warnings, fmt.Sprintf("key %q is obsolete and ignored: TLS is terminated by Apache in front of the coordinator", key))
		return nil
	}
}

// objectVal decodes an object, rejecting unknown keys with a hint of the
// nearest known one, and hands each value to its field's setter.
func objectVal(fields []field) func(string, []byte) error { return objectWith(fields, nil) }

// objectWith is objectVal; with warnings set, an unknown key is ignored with
// a warning instead (the top level, which sites share with the simulation
// server's keys and fill with "_comment" notes).
func objectWith(fields []field, warnings *[]string) func(string, []byte) error {
	return func(prefix string, raw []byte) error {
		var m map[string]json.RawMessage
		if jsonKind(raw) != "an object" {
			if prefix == "" {
				return &Error{Msg: fmt.Sprintf("the file must hold one JSON object, not %s", jsonKind(raw))}
			}
			return typeErr(prefix, "an object", raw)
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return &Error{Key: prefix, Msg: "unreadable JSON: " + describeSyntax(raw, err)}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys) // report problems in a stable order
		known := make(map[string]field, len(fields))
		for _, f := range fields {
			known[f.key] = f
		}
		for _, k := range keys {
			full := k
			if prefix != "" {
				full = prefix + "." + k
			}
			f, ok := known[k]
			if !ok {
				hint := ""
				if near := nearest(k, fields); near != "" {
					hint = fmt.Sprintf(" (did you mean %q?)", near)
				}
				if warnings != nil {
					// The one typo that leaves the farm empty: every visitor
					// refused. The original stopped on it (a KeyError).
					if _, has := m[serversKey]; prefix == "" && !has && nearest(k, fields) == serversKey {
						return &Error{Key: k, Msg: fmt.Sprintf("is not a key; %q, the list of simulation servers, is absent: is this it, misspelled? (the original could not start without it either)", serversKey)}
					}
					*warnings = append(*warnings, fmt.Sprintf("key %q is not a session server key and is ignored%s", full, hint))
					continue
				}
				return &Error{Key: full, Msg: "unknown key" + hint}
			}
			if err := f.set(full, m[k]); err != nil {
				return err
			}
		}
		return nil
	}
}

// serversKey is the key a farm's servers are listed under.
const serversKey = "simulationServers"

// describeSyntax turns a JSON error into "line L, column C: …".
func describeSyntax(data []byte, err error) string {
	var off int64 = -1
	switch e := err.(type) {
	case *json.SyntaxError:
		off = e.Offset
	case *json.UnmarshalTypeError:
		off = e.Offset
	}
	if off < 0 {
		return err.Error()
	}
	line, col := 1, 1
	for _, b := range data[:min(int(off), len(data))] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	if off > 0 && int(off) <= len(data) && data[off-1] == '/' {
		return fmt.Sprintf("line %d, column %d: JSON has no comments; remove it, or keep the note in a \"_comment\" key", line, col-1)
	}
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}

// nearest returns the known key closest to k, if it is close enough to be a typo.
func nearest(k string, fields []field) string {
	best, bestD := "", 4
	for _, f := range fields {
		if strings.EqualFold(f.key, k) {
			return f.key
		}
		if d := distance(strings.ToLower(k), strings.ToLower(f.key)); d < bestD {
			best, bestD = f.key, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// objectsVal decodes an array of objects; each() gives the fields of the next item.
func objectsVal(each func() []field) func(string, []byte) error {
	return func(key string, raw []byte) error {
		var items []json.RawMessage
		if jsonKind(raw) != "an array" || json.Unmarshal(raw, &items) != nil {
			return typeErr(key, "an array of objects", raw)
		}
		for i, item := range items {
			if err := objectVal(each())(fmt.Sprintf("%s[%d]", key, i), item); err != nil {
				return err
			}
		}
		return nil
	}
}
