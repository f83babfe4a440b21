package schema

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

// readWireReference is what readWire replaces: encoding/json into a struct
// of pointers. The fuzz target checks that both read the same fields.
func readWireReference(data []byte, w *wire) error {
	var ref struct {
		V           *float64        `json:"v"`
		Load        *float64        `json:"load"`
		CPU         *float64        `json:"cpu"`
		Memory      *float64        `json:"memory"`
		Swap        *float64        `json:"swap"`
		GPU         *float64        `json:"gpu"`
		GPUMemory   *float64        `json:"gpuMemory"`
		VRAM        *float64        `json:"vram"`
		Sessions    *float64        `json:"sessions"`
		MaxSessions *float64        `json:"maxSessions"`
		Interval    *float64        `json:"interval"`
		Server      *string         `json:"server"`
		Status      *string         `json:"status"`
		Time        *string         `json:"time"`
		Probe       *string         `json:"probe"`
		InstantLoad *float64        `json:"instantLoad"`
		Sharing     json.RawMessage `json:"sharing"`
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		return err
	}
	if len(ref.Sharing) > 0 && string(ref.Sharing) != "null" {
		w.sharing = ref.Sharing
	}
	for i, p := range []*float64{ref.V, ref.Load, ref.CPU, ref.Memory, ref.Swap, ref.GPU, ref.GPUMemory, ref.VRAM,
		ref.Sessions, ref.MaxSessions, ref.Interval, ref.InstantLoad} {
		if p != nil {
			w.num[i], w.hasNum[i] = *p, true
		}
	}
	for i, p := range []*string{ref.Server, ref.Status, ref.Time, ref.Probe} {
		if p != nil {
			w.str[i], w.hasStr[i] = *p, true
		}
	}
	return nil
}

// schemaKeys are the keys readWire reads.
var schemaKeys = []string{"v", "load", "cpu", "memory", "swap", "gpu", "gpuMemory", "vram", "sessions",
	"maxSessions", "interval", "server", "status", "time", "probe", "instantLoad", "sharing"}

// caseFolded says whether data has a top-level key that encoding/json would
// take for a schema field by ignoring case ("LOAD"), which readWire, as the
// contract says, does not.
func caseFolded(data []byte) bool {
	v, err := fastjson.ParseBytes(data)
	if err != nil {
		return false
	}
	o, err := v.Object()
	if err != nil {
		return false
	}
	folded := false
	o.Visit(func(k []byte, _ *fastjson.Value) {
		key := string(k)
		if field(k) >= 0 {
			return
		}
		for _, name := range schemaKeys {
			if strings.EqualFold(key, name) || strings.EqualFold(strings.ToLower(key), name) {
				folded = true
			}
		}
	})
	return folded || strings.ContainsAny(string(data), "\u017f\u212a") // Unicode letters that fold to s and k
}

// FuzzDecode: no input panics the decoder; whatever it accepts keeps the
// schema's promises, survives an encode/decode round trip unchanged, and is
// read exactly as encoding/json would read it.
// Seeds: testdata/fuzz/FuzzDecode and the ones below.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"v":1,"server":"a/1","status":"leaving","load":0,"interval":60,"extra":{"x":[1,2]}}`))
	f.Add([]byte(`{"v":1,"server":"a/1","status":"up","load":1e999,"interval":1}`))
	f.Add([]byte(`{"v":1,"server":"a/1","status":"up","load":1,"interval":1,"sessions":-1}`))
	f.Add([]byte(`{"v":1,"server":"a/1","status":"up","load":1,"load":2,"interval":1,"cpu":null}`))
	f.Add([]byte(`{"v":1,"server":"a/1","status":"up","load":1,"interval":1,"instantLoad":3,"sharing":{"allowedRepositories":["https://github.com/a/"],"blockedRepositories":[],"docker":true,"shareIdleTime":50}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, err := Decode(data)
		ref, refErr := decodeWith(data, readWireReference)
		if !caseFolded(data) && json.Valid(data) {
			if (err == nil) != (refErr == nil) {
				t.Fatalf("decoders disagree on %q: fast %v, encoding/json %v", data, err, refErr)
			}
			if err == nil && !reflect.DeepEqual(hb, ref) {
				t.Fatalf("decoders read %q differently:\n%+v\n%+v", data, hb, ref)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if hb.V != 1 || hb.Server == "" || len(hb.Server) > 255 || !(hb.Load >= 0 && hb.Load <= 100) ||
			!(hb.Interval > 0 && hb.Interval <= 60) {
			t.Fatalf("accepted a heartbeat that breaks the schema: %+v", hb)
		}
		for _, p := range []*float64{hb.CPU, hb.Memory, hb.Swap, hb.GPU, hb.GPUMemory, hb.VRAM} {
			if p != nil && !(*p >= 0 && *p <= 100) {
				t.Fatalf("accepted a component out of [0, 100]: %+v", hb)
			}
		}
		for _, p := range []*int{hb.Sessions, hb.MaxSessions} {
			if p != nil && *p < 0 {
				t.Fatalf("accepted a negative count: %+v", hb)
			}
		}
		enc, err := hb.Encode()
		if err != nil {
			t.Fatalf("cannot encode an accepted heartbeat: %v", err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded heartbeat refused: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(hb, again) {
			t.Fatalf("round trip changed it:\n%+v\n%+v", hb, again)
		}
	})
}
