package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// TestStalledCoordinatorInventsNoFailure: a coordinator whose process
// stalls (SIGSTOP for 3 s, five times the agents' 600 ms silence timeout)
// finds, once it runs again, the heartbeats that came meanwhile, and judges
// no server silent for its own stall: no down, so no mail.
func TestStalledCoordinatorInventsNoFailure(t *testing.T) {
	servers := []string{"127.0.0.1:2951", "127.0.0.1:2952"}
	smtp, keys := mailing(t, map[string]any{"holdOff": 0})
	keys["simulationServers"] = servers
	f := startFarm(t, keys)
	// Agents on a quiet machine's /proc: the visitors' refusals must mean
	// the stall, not this loaded machine's own load.
	quiet := quietProc(t)
	for _, s := range servers {
		startEnv(t, "", []string{"HOST_PROC=" + quiet}, f.agent, "-nats", f.nats, "-server", s, "-interval", "200ms",
			"-probe", "off", "-simulation-config", "off")
	}
	for _, s := range servers {
		f.waitState(t, s, 10*time.Second, "up")
	}
	load := startVisitors(t, []*farm{f})
	before := downs(t, []*farm{f})
	mails := len(smtp.Messages())
	if err := f.coord.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the stall itself: what is under test, not a wait for an event
	if err := f.coord.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if f.scrape(t).value("simgate_stalls_total") < 1 {
			return errString("the stall was not noticed")
		}
		return nil
	})
	// Two timeouts more: a false down would have come by now.
	deadline := time.Now().Add(1200 * time.Millisecond)
	testutil.WaitFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if time.Now().Before(deadline) {
			return errString("watching")
		}
		return nil
	})
	for _, s := range servers {
		if st := f.servers(t)[s].State; st != "up" {
			t.Errorf("%s is %s after the stall", s, st)
		}
	}
	placed, refused, errs := load.halt()
	mc := countMails(smtp.Messages()[mails:], nil)
	figures{placed: placed, refused: refused, errors: errs, falseDowns: falseDowns(t, []*farm{f}, before, 0), mails: &mc}.report(t)
}
