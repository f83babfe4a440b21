// Package schema is simgate's wire contract (PROTOCOL.md §2): the
// subjects, the heartbeat and event schemas, the names an agent and any
// client need. It links no NATS server: the agent imports it alone, the
// coordinator's embedded server and intake are internal/bus.
package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/simgate/simgate/internal/domain"
)

// MaxHeartbeat is the largest heartbeat the contract allows, in bytes.
const MaxHeartbeat = 4096

// Heartbeat statuses.
const (
	StatusUp          = "up"
	StatusDraining    = "draining"
	StatusServiceDown = "service-down"
	StatusLeaving     = "leaving"
)

// Heartbeat is what an agent publishes on <prefix>.load.<node>.
// Optional fields are pointers so that "absent" and "zero" differ:
// a machine without a GPU omits gpu, gpuMemory and vram.
type Heartbeat struct {
	V             int     `json:"v"`
	Server        string  `json:"server"`
	Status        string  `json:"status"`
	Load          float64 `json:"load"`
	domain.Vector         // cpu, memory, swap, gpu, gpuMemory, vram: in this place on the wire
	Sessions      *int    `json:"sessions,omitempty"`
	MaxSessions   *int    `json:"maxSessions,omitempty"`
	Interval      float64 `json:"interval"`
	Time          string  `json:"time,omitempty"`
	// Probe is simgate's addition: what the agent's check of its simulation
	// server saw when it failed ("GET http://127.0.0.1:2000/load: connection refused").
	Probe string `json:"probe,omitempty"`
	// InstantLoad is the latest single sample, which the simulation server
	// compares with its shareIdleTime (PROTOCOL §1.1).
	InstantLoad *float64 `json:"instantLoad,omitempty"`
	// Sharing is the simulation server's own policy (its simulation.json),
	// when the agent knows it: which repositories it runs (PROTOCOL §1.1).
	Sharing *Sharing `json:"sharing,omitempty"`
}

// Sharing is what a simulation server runs, as webots-server decides it:
// repositories under AllowedRepositories at any load; any other, not under
// BlockedRepositories, only with Docker on and the load at or below
// ShareIdleTime (50 when absent).
type Sharing struct {
	AllowedRepositories []string `json:"allowedRepositories,omitempty"`
	BlockedRepositories []string `json:"blockedRepositories,omitempty"`
	Docker              bool     `json:"docker,omitempty"`
	ShareIdleTime       *float64 `json:"shareIdleTime,omitempty"`
}

// Bounds of a sharing policy in a heartbeat.
const (
	maxRepositories = 64
	maxPrefix       = 512
)

// decodeSharing reads and checks the sharing object; raw is its JSON.
func decodeSharing(raw []byte) (*Sharing, error) {
	var sh Sharing
	if err := json.Unmarshal(raw, &sh); err != nil {
		return nil, invalid("sharing: %v", err)
	}
	for _, list := range []struct {
		name string
		v    *[]string
	}{{"allowedRepositories", &sh.AllowedRepositories}, {"blockedRepositories", &sh.BlockedRepositories}} {
		if len(*list.v) > maxRepositories {
			return nil, invalid("sharing.%s has %d items, more than %d", list.name, len(*list.v), maxRepositories)
		}
		for _, p := range *list.v {
			if p == "" || len(p) > maxPrefix {
				return nil, invalid("sharing.%s holds an empty prefix or one over %d bytes", list.name, maxPrefix)
			}
		}
		if len(*list.v) == 0 {
			*list.v = nil // absent and empty are one: a round trip keeps it
		}
	}
	if t := sh.ShareIdleTime; t != nil && !(*t >= 0 && *t <= 100) {
		return nil, invalid("sharing.shareIdleTime %v is not a percentage in [0, 100]", *t)
	}
	return &sh, nil
}

// Fields Decode reads: numbers, then strings, in wire's arrays.
const (
	fV = iota
	fLoad
	fCPU
	fMemory
	fSwap
	fGPU
	fGPUMemory
	fVRAM
	fSessions
	fMaxSessions
	fInterval
	fInstantLoad
	numFields
)

const (
	fServer = iota
	fStatus
	fTime
	fProbe
	strFields
)

// field maps a key to its slot: numbers first, then strings at
// numFields+i; -1 for a key the schema does not read. A switch, not a map:
// it runs for every key of every heartbeat of the farm.
func field(k []byte) int {
	switch string(k) {
	case "v":
		return fV
	case "load":
		return fLoad
	case "cpu":
		return fCPU
	case "memory":
		return fMemory
	case "swap":
		return fSwap
	case "gpu":
		return fGPU
	case "gpuMemory":
		return fGPUMemory
	case "vram":
		return fVRAM
	case "sessions":
		return fSessions
	case "maxSessions":
		return fMaxSessions
	case "interval":
		return fInterval
	case "server":
		return numFields + fServer
	case "status":
		return numFields + fStatus
	case "time":
		return numFields + fTime
	case "probe":
		return numFields + fProbe
	case "instantLoad":
		return fInstantLoad
	case "sharing":
		return sharingField
	}
	return -1
}

// sharingField is the slot of "sharing", an object read whole.
const sharingField = numFields + strFields

// wire holds the fields Decode reads and which of them were present.
type wire struct {
	num    [numFields]float64
	str    [strFields]string
	hasNum [numFields]bool
	hasStr [strFields]bool
	// scratch holds a number's literal while it is checked.
	scratch [40]byte
	// counts back Heartbeat.Sessions and MaxSessions, so that they need no
	// allocation of their own.
	counts [2]int
	// sharing is the raw "sharing" object, nil when absent or null.
	sharing []byte
	err     error
}

func (w *wire) opt(i int) *float64 {
	if !w.hasNum[i] {
		return nil
	}
	return &w.num[i] // w lives on the heap with the heartbeat: one allocation
}

// jsonNumber reports whether s is a number as JSON (RFC 8259) writes it:
// the parser is lenient ("01", "+1", "NaN"), the schema's fields are not.
func jsonNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	return i == len(s)
}

// parsers are reused: the intake decodes every heartbeat of the farm.
var parsers fastjson.ParserPool

// readWire extracts the schema's fields from a syntactically valid JSON
// object, as encoding/json would into a struct of pointers: exact key
// names, null as absent, the last of duplicate keys, a value of the wrong
// type refused, unknown keys ignored.
func readWire(data []byte, w *wire) error {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(data)
	if err != nil {
		return err
	}
	o, err := v.Object()
	if err != nil {
		return err
	}
	w.err = nil
	o.Visit(w.visit)
	return w.err
}

// visit reads one key of the object; a method value, not a closure, so that
// nothing escapes per heartbeat beyond w itself.
func (w *wire) visit(k []byte, v *fastjson.Value) {
	if w.err != nil {
		return
	}
	i := field(k)
	if i < 0 {
		return
	}
	null := v.Type() == fastjson.TypeNull
	if i == sharingField {
		w.sharing = nil
		if !null {
			w.sharing = v.MarshalTo(nil)
		}
		return
	}
	if i < numFields {
		w.hasNum[i] = false
		if null {
			return
		}
		f, ferr := v.Float64()
		if ferr != nil || v.Type() != fastjson.TypeNumber || !jsonNumber(v.MarshalTo(w.scratch[:0])) || math.IsInf(f, 0) || math.IsNaN(f) {
			w.err = fmt.Errorf("%s is not a number", k)
			return
		}
		w.num[i], w.hasNum[i] = f, true
		return
	}
	i -= numFields
	w.hasStr[i] = false
	if null {
		return
	}
	b, serr := v.StringBytes()
	if serr != nil {
		w.err = fmt.Errorf("%s is not a string", k)
		return
	}
	w.str[i], w.hasStr[i] = intern(b), true
}

// intern returns the statuses as constants, so that only free text costs
// an allocation.
func intern(b []byte) string {
	switch string(b) {
	case StatusUp:
		return StatusUp
	case StatusDraining:
		return StatusDraining
	case StatusServiceDown:
		return StatusServiceDown
	case StatusLeaving:
		return StatusLeaving
	}
	return string(b)
}

// ErrInvalid wraps every reason a heartbeat is refused.
var ErrInvalid = errors.New("invalid heartbeat")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Decode parses and validates a heartbeat against PROTOCOL.md §2.
// It never panics on any input; every refusal wraps ErrInvalid.
func Decode(data []byte) (Heartbeat, error) { return decodeWith(data, readWire) }

// decodeWith is Decode with the field reader given: the fuzz test compares
// readWire with encoding/json.
func decodeWith(data []byte, read func([]byte, *wire) error) (Heartbeat, error) {
	if len(data) > MaxHeartbeat {
		return Heartbeat{}, invalid("%d bytes, more than %d", len(data), MaxHeartbeat)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Heartbeat{}, invalid("not a JSON object")
	}
	if d := depth(trimmed); d > maxDepth {
		return Heartbeat{}, invalid("nested %d levels deep; a heartbeat is a flat object", d)
	}
	if !utf8.Valid(data) {
		return Heartbeat{}, invalid("not UTF-8")
	}
	w := new(wire)
	if err := read(data, w); err != nil {
		return Heartbeat{}, invalid("%v", err)
	}
	switch {
	case !w.hasNum[fV]:
		return Heartbeat{}, invalid("missing v")
	case w.num[fV] != 1:
		return Heartbeat{}, invalid("v is %v, want 1", w.num[fV])
	case !w.hasStr[fServer] || w.str[fServer] == "":
		return Heartbeat{}, invalid("missing server")
	case !w.hasStr[fStatus]:
		return Heartbeat{}, invalid("missing status")
	case !w.hasNum[fLoad]:
		return Heartbeat{}, invalid("missing load")
	case !w.hasNum[fInterval]:
		return Heartbeat{}, invalid("missing interval")
	}
	hb := Heartbeat{V: 1, Server: w.str[fServer], Status: w.str[fStatus], Load: w.num[fLoad], Interval: w.num[fInterval],
		Vector: domain.Vector{CPU: w.opt(fCPU), Memory: w.opt(fMemory), Swap: w.opt(fSwap), GPU: w.opt(fGPU), GPUMemory: w.opt(fGPUMemory), VRAM: w.opt(fVRAM)}}
	if len(hb.Server) > 255 {
		return Heartbeat{}, invalid("server is %d bytes long", len(hb.Server))
	}
	switch hb.Status {
	case StatusUp, StatusDraining, StatusServiceDown, StatusLeaving:
	default:
		return Heartbeat{}, invalid("status %q is not up, draining, service-down or leaving", hb.Status)
	}
	hb.InstantLoad = w.opt(fInstantLoad)
	for _, p := range []struct {
		name string
		v    *float64
	}{{"load", &hb.Load}, {"cpu", hb.CPU}, {"memory", hb.Memory}, {"swap", hb.Swap},
		{"gpu", hb.GPU}, {"gpuMemory", hb.GPUMemory}, {"vram", hb.VRAM}, {"instantLoad", hb.InstantLoad}} {
		if p.v != nil && !(*p.v >= 0 && *p.v <= 100) { // also false for NaN
			return Heartbeat{}, invalid("%s %v is not a percentage in [0, 100]", p.name, *p.v)
		}
	}
	if !(hb.Interval > 0 && hb.Interval <= 60) || math.IsNaN(hb.Interval) {
		return Heartbeat{}, invalid("interval %v is not in (0, 60]", hb.Interval)
	}
	var err error
	if hb.Sessions, err = count("sessions", w.opt(fSessions), &w.counts[0]); err != nil {
		return Heartbeat{}, err
	}
	if hb.MaxSessions, err = count("maxSessions", w.opt(fMaxSessions), &w.counts[1]); err != nil {
		return Heartbeat{}, err
	}
	if w.hasStr[fTime] {
		if _, err := time.Parse(time.RFC3339Nano, w.str[fTime]); err != nil {
			return Heartbeat{}, invalid("time %q is not RFC 3339", w.str[fTime])
		}
		hb.Time = w.str[fTime]
	}
	if w.sharing != nil {
		if hb.Sharing, err = decodeSharing(w.sharing); err != nil {
			return Heartbeat{}, err
		}
	}
	if w.hasStr[fProbe] {
		hb.Probe = w.str[fProbe]
		if len(hb.Probe) > 512 {
			hb.Probe = hb.Probe[:512]
		}
	}
	return hb, nil
}

// count checks an optional non-negative whole number and stores it in *to.
func count(name string, n *float64, to *int) (*int, error) {
	if n == nil {
		return nil, nil
	}
	v := *n
	if v != math.Trunc(v) || !(v >= 0 && v <= 1_000_000) {
		return nil, invalid("%s %v is not a whole number in [0, 1000000]", name, v)
	}
	*to = int(v)
	return to, nil
}

// Encode serialises a heartbeat; it is what agents publish.
func (hb Heartbeat) Encode() ([]byte, error) {
	return json.Marshal(hb)
}

// statuses are the wire's statuses in the domain's words.
var statuses = map[string]domain.Status{
	StatusUp:          domain.StatusUp,
	StatusDraining:    domain.StatusDraining,
	StatusServiceDown: domain.StatusServiceDown,
	StatusLeaving:     domain.StatusLeaving,
}

// Report is the heartbeat in the domain's words, received at (the
// coordinator's clock: agents' clocks may drift).
func (hb Heartbeat) Report(at time.Time) domain.Report {
	rep := domain.Report{Server: hb.Server, Status: statuses[hb.Status], Load: hb.Load, Vector: hb.Vector,
		Sessions: -1, Interval: hb.IntervalDuration(), Note: hb.Probe, At: at, InstantLoad: hb.InstantLoad}
	if hb.Sessions != nil {
		rep.Sessions = *hb.Sessions
	}
	if hb.MaxSessions != nil {
		rep.MaxSessions = *hb.MaxSessions
	}
	if sh := hb.Sharing; sh != nil {
		rep.Sharing = &domain.Sharing{Allowed: sh.AllowedRepositories, Blocked: sh.BlockedRepositories,
			Docker: sh.Docker, ShareIdle: 50} // webots-server's default
		if sh.ShareIdleTime != nil {
			rep.Sharing.ShareIdle = *sh.ShareIdleTime
		}
	}
	return rep
}

// IntervalDuration is the heartbeat's interval as a duration.
func (hb Heartbeat) IntervalDuration() time.Duration {
	return time.Duration(hb.Interval * float64(time.Second))
}

// maxDepth bounds the nesting of a heartbeat: the schema is one flat object,
// and unknown fields may hold small values, not a tower of brackets.
const maxDepth = 8

// depth is the deepest nesting of objects and arrays in data, strings skipped.
func depth(data []byte) int {
	if len(data) > 0 && bytes.IndexByte(data[1:], '{') < 0 && bytes.IndexByte(data, '[') < 0 {
		return 1 // a flat object, as every agent sends: no scan
	}
	d, deepest, inString, escaped := 0, 0, false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}
