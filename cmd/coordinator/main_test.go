package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A configuration the coordinator cannot run with exits 2 (PROTOCOL §3),
// or what the unit asks for: 78, the one status it does not restart on (Go
// exits 2 for a panic or an out-of-memory death, which must be restarted).
func TestConfigErrorStatus(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	for _, tc := range []struct {
		env  string
		want int
	}{{"", 2}, {"78", 78}, {"nonsense", 2}, {"300", 2}} {
		t.Run("SIMGATE_CONFIG_ERROR_STATUS="+tc.env, func(t *testing.T) {
			t.Setenv("SIMGATE_CONFIG_ERROR_STATUS", tc.env)
			if got := run([]string{missing}, io.Discard, io.Discard); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
			if got := run([]string{"a.json", "b.json"}, io.Discard, io.Discard); got != tc.want {
				t.Errorf("two files: exit %d, want %d", got, tc.want)
			}
		})
	}
}

// A misspelled simulationServers, with the key itself absent, stops the
// start (exit 2) naming both keys: the original stopped on it (KeyError),
// and a farm of no server refuses every visitor.
func TestMisspelledServersKeyStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.json")
	if err := os.WriteFile(path, []byte(`{"port": 0, "simulationServer": ["127.0.0.1:2000"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	if got := run([]string{path}, io.Discard, &stderr); got != 2 {
		t.Fatalf("exit %d, want 2", got)
	}
	for _, want := range []string{`"simulationServer"`, `"simulationServers"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("message %q does not name %s", stderr.String(), want)
		}
	}
}
