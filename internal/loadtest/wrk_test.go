package loadtest

import (
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
