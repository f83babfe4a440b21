package loadtest

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out, err := os.ReadFile(filepath.Join("testdata", "wrk.txt"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseWrk("x", string(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.Throughput != 41876.32 || r.P50 != 1270*time.Microsecond || r.P99 != 4650*time.Microsecond || r.Errors != "Non-2xx or 3xx responses: 12" {
		t.Errorf("%+v", r)
	}
	if _, err := parseWrk("x", "garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestPairedRatio(t *testing.T) {
	rs := func(v ...float64) []Result {
		out := make([]Result, len(v))
		for i, x := range v {
			out[i].Throughput = x
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		got, ref []Result
		want     float64
	}{
		{"odd", rs(90, 50, 100), rs(100, 100, 100), 0.9},
		{"even", rs(80, 100), rs(100, 100), 0.9},
		// The machine slowed down in round 2 for both: each pair still says 0.9.
		{"drift", rs(90, 45, 90), rs(100, 50, 100), 0.9},
		{"zero baseline skipped", rs(90, 10), rs(100, 0), 0.9},
		{"none", nil, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pairedRatio(tc.got, tc.ref); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("pairedRatio = %v, want %v", got, tc.want)
			}
		})
	}
}
