package schema

import (
	"errors"
	"strings"
	"testing"
)

const good = `{"v":1,"server":"cyberbotics1.epfl.ch/2000","status":"up","load":37.5,"cpu":12,"memory":40.1,
"swap":0,"gpu":55,"gpuMemory":20,"vram":30.5,"sessions":2,"maxSessions":100,"interval":1.0,"time":"2026-11-24T21:53:12.123Z"}`

func TestDecodeGood(t *testing.T) {
	hb, err := Decode([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if hb.Server != "cyberbotics1.epfl.ch/2000" || hb.Load != 37.5 || *hb.GPU != 55 || *hb.Sessions != 2 || hb.Interval != 1 {
		t.Errorf("%+v", hb)
	}
	min, err := Decode([]byte(`{"v":1,"server":"a/1","status":"leaving","load":0,"interval":60,"extra":{"x":[1,2]}}`))
	if err != nil || min.CPU != nil || min.GPU != nil || min.Sessions != nil {
		t.Errorf("minimal heartbeat with unknown field: %+v, %v", min, err)
	}
	// Brackets inside strings are not nesting.
	if _, err := Decode([]byte(`{"v":1,"server":"a/1","status":"up","load":0,"interval":1,"note":"[[[[[[[[[[{{{{{{{{{{\"\\"}`)); err != nil {
		t.Errorf("brackets in a string: %v", err)
	}
}

func TestDecodeHostile(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	tests := map[string]string{
		"empty":             ``,
		"not json":          `hello`,
		"array":             `[1]`,
		"truncated":         `{"v":1,"server":"a/1"`,
		"missing v":         `{"server":"a/1","status":"up","load":1,"interval":1}`,
		"v 2":               `{"v":2,"server":"a/1","status":"up","load":1,"interval":1}`,
		"v string":          `{"v":"1","server":"a/1","status":"up","load":1,"interval":1}`,
		"missing server":    `{"v":1,"status":"up","load":1,"interval":1}`,
		"empty server":      `{"v":1,"server":"","status":"up","load":1,"interval":1}`,
		"server number":     `{"v":1,"server":7,"status":"up","load":1,"interval":1}`,
		"missing status":    `{"v":1,"server":"a/1","load":1,"interval":1}`,
		"bad status":        `{"v":1,"server":"a/1","status":"fine","load":1,"interval":1}`,
		"missing load":      `{"v":1,"server":"a/1","status":"up","interval":1}`,
		"load string":       `{"v":1,"server":"a/1","status":"up","load":"1","interval":1}`,
		"load negative":     `{"v":1,"server":"a/1","status":"up","load":-0.1,"interval":1}`,
		"load over 100":     `{"v":1,"server":"a/1","status":"up","load":100.01,"interval":1}`,
		"load huge":         `{"v":1,"server":"a/1","status":"up","load":1e999,"interval":1}`,
		"load NaN":          `{"v":1,"server":"a/1","status":"up","load":NaN,"interval":1}`,
		"cpu over":          `{"v":1,"server":"a/1","status":"up","load":1,"cpu":101,"interval":1}`,
		"vram negative":     `{"v":1,"server":"a/1","status":"up","load":1,"vram":-1,"interval":1}`,
		"missing interval":  `{"v":1,"server":"a/1","status":"up","load":1}`,
		"interval zero":     `{"v":1,"server":"a/1","status":"up","load":1,"interval":0}`,
		"interval 61":       `{"v":1,"server":"a/1","status":"up","load":1,"interval":61}`,
		"sessions fraction": `{"v":1,"server":"a/1","status":"up","load":1,"interval":1,"sessions":1.5}`,
		"sessions negative": `{"v":1,"server":"a/1","status":"up","load":1,"interval":1,"sessions":-1}`,
		"bad time":          `{"v":1,"server":"a/1","status":"up","load":1,"interval":1,"time":"yesterday"}`,
		"deep nesting":      `{"v":1,"server":"a/1","status":"up","load":1,"interval":1,"x":` + deep + `}`,
		"deep, small":       `{"v":1,"server":"a/1","status":"up","load":1,"interval":1,"x":` + strings.Repeat("[", 9) + strings.Repeat("]", 9) + `}`,
		"oversize":          `{"v":1,"server":"a/1","status":"up","load":1,"interval":1,"pad":"` + strings.Repeat("x", 5000) + `"}`,
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(doc)); !errors.Is(err, ErrInvalid) {
				t.Errorf("want ErrInvalid, got %v", err)
			}
		})
	}
}

func TestNode(t *testing.T) {
	for in, want := range map[string]string{
		"cyberbotics1.epfl.ch/2000": "cyberbotics1_epfl_ch_2000",
		"localhost:2000":            "localhost_2000",
		"a-b_C9/1":                  "a-b_C9_1",
		"*.>":                       "___",
	} {
		if got := Node(in); got != want {
			t.Errorf("Node(%q) = %q, want %q", in, got, want)
		}
	}
	s := Subjects{Prefix: "simgate"}
	if s.Load("a.b/1") != "simgate.load.a_b_1" || s.Event("down", "a/1") != "simgate.event.down.a_1" {
		t.Error("subjects")
	}
	if s.NodeOf("simgate.load.a_1") != "a_1" || s.NodeOf("simgate.load.a.b") != "" || s.NodeOf("other.load.a") != "" {
		t.Error("nodeOf")
	}
}

func BenchmarkDecode(b *testing.B) {
	data := []byte(good)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFieldKnowsEverySchemaKey(t *testing.T) {
	seen := map[int]string{}
	for _, k := range schemaKeys {
		i := field([]byte(k))
		if i < 0 || i > sharingField {
			t.Fatalf("field(%q) = %d", k, i)
		}
		if prev, dup := seen[i]; dup {
			t.Fatalf("%q and %q share slot %d", k, prev, i)
		}
		seen[i] = k
	}
	for _, k := range []string{"", "Load", "LOAD", "servers", "x"} {
		if i := field([]byte(k)); i != -1 {
			t.Errorf("field(%q) = %d, want -1", k, i)
		}
	}
}

func TestDepth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{`{"a":1}`, 1},
		{`{"a":"{[{["}`, 1},
		{`{"a":[1]}`, 2},
		{`{"a":{"b":[{}]}}`, 4},
		{`{"a":"\"{","b":[]}`, 2},
	} {
		if got := depth([]byte(tc.in)); got != tc.want {
			t.Errorf("depth(%s) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
