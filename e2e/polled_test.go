package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// TestPolledServerNearTheThresholdKeepsServing: a server without an agent
// answering 94 % on /load (the original's poll): one visitor is placed (the
// booking puts it at the threshold), and the next within 5 s, once a poll
// half a period after the booking has let it lapse; the original kept
// placing there, and simgate refused everyone for 18 s.
func TestPolledServerNearTheThresholdKeepsServing(t *testing.T) {
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "94")
	}))
	t.Cleanup(stub.Close)
	entry := strings.TrimPrefix(stub.URL, "http://")
	f := startFarm(t, map[string]any{"simulationServers": []string{entry}})
	f.waitState(t, entry, 10*time.Second, "up")
	if _, body, _ := getAs(f.base+"/session", "198.51.100.31"); body != "ws://"+entry {
		t.Fatalf("the first visitor got %q", body)
	}
	first := time.Now()
	testutil.WaitFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if _, body, _ := getAs(f.base+"/session", "198.51.100.32"); body != "ws://"+entry {
			return fmt.Errorf("the second visitor got %q", body)
		}
		return nil
	})
	took := time.Since(first)
	t.Logf("a second visitor placed %v after the first", took.Round(100*time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("the second visitor waited %v, want within 5 s", took)
	}
}
