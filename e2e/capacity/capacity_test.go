// Package capacity checks the capacity what-if against the farm it
// predicts (issue 34, README Capacity): its own package, so that its two
// minutes of load run beside the e2e package rather than inside its time.
package capacity

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/loadtest"
	"github.com/simgate/simgate/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }

// TestWhatIfPredictsMoreServers: the same demand (Poisson visitors, 25 a
// second for two minutes, exponential sessions of 2 s) against 6 simulated
// servers, then 8. The what-if the first coordinator makes from its own
// history predicts how many visitors 8 servers turn away: within ±10 % of
// what the second coordinator measures.
func TestWhatIfPredictsMoreServers(t *testing.T) {
	if testing.Short() {
		t.Skip("four minutes of load")
	}
	coord, _ := testutil.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const n, k = 6, 2
	rep, err := loadtest.Validate(ctx, loadtest.Validation{CoordBin: coord, Dir: t.TempDir(), N: n, K: k, Demand: loadtest.DefaultDemand()})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	loadtest.PrintValidation(&out, n, k, rep)
	t.Log("\n" + out.String())
	if rep.Measured[1].Refused < 100 {
		t.Fatalf("with %d servers only %d visitors were turned away: the check needs a farm that refuses", n+k, rep.Measured[1].Refused)
	}
	if e := rep.Error(); e < -0.10 || e > 0.10 {
		t.Errorf("the what-if predicted %d turned away with %d servers; %d were: %+.1f %%, outside ±10 %%",
			rep.Predicted.Refused, n+k, rep.Measured[1].Refused, 100*e)
	}
	if m := rep.WhatIf.Model; m.Servers != n || rep.WhatIf.Seats != 5 {
		t.Errorf("the model: %d servers of %d seats, want %d of 5", m.Servers, rep.WhatIf.Seats, n)
	}
}
