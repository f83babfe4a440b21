package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/notify/smtptest"
	"github.com/simgate/simgate/internal/testutil"
)

// beater beats for servers, as their agents would, through one member
// every 200 ms, each at the load the test sets, until the test ends.
type beater struct {
	mu   sync.Mutex // guards load
	load map[string]int
}

const beatInterval = 200 * time.Millisecond

func startBeater(t *testing.T, url string, servers []string) *beater {
	t.Helper()
	b := &beater{load: map[string]int{}}
	for _, s := range servers {
		b.load[s] = 10
	}
	nc, err := nats.Connect(url, nats.Name("beater"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(beatInterval)
		defer tick.Stop()
		for {
			b.mu.Lock()
			for s, load := range b.load {
				_ = nc.Publish("simgate.load."+node(s), fmt.Appendf(nil,
					`{"v":1,"server":%q,"status":"up","load":%d,"maxSessions":1000,"interval":%g}`, s, load, beatInterval.Seconds()))
			}
			b.mu.Unlock()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(done); wg.Wait(); nc.Close() })
	return b
}

func (b *beater) set(server string, load int) {
	b.mu.Lock()
	b.load[server] = load
	b.mu.Unlock()
}

// silence stops the beats of server, as its agent's death would.
func (b *beater) silence(server string) {
	b.mu.Lock()
	delete(b.load, server)
	b.mu.Unlock()
}

// others is members but not.
func others(members []*farm, not *farm) []*farm {
	var out []*farm
	for _, f := range members {
		if f != not {
			out = append(out, f)
		}
	}
	return out
}

// beatenMailCluster is three members mailing at once (no hold-off), every
// server up on each, beaten through a member other than the leader (keep:
// the two others).
func beatenMailCluster(t *testing.T, servers []string) (c *cluster, smtp *smtptest.Server, leader *farm, keep []*farm, beats *beater) {
	t.Helper()
	c, smtp = startMailCluster(t, 3, servers, map[string]any{"holdOff": 0})
	leader = c.waitFormed(t, c.members)
	keep = others(c.members, leader)
	beats = startBeater(t, keep[0].nats, servers)
	for _, f := range c.members {
		for _, s := range servers {
			f.waitState(t, s, 15*time.Second, "up")
		}
	}
	return c, smtp, leader, keep, beats
}

// TestStepdownWhileSMTPHangsSendsOnce: issue 30. The leader hands a mail
// to an SMTP server that hangs (the message sent, no answer), and is
// frozen (SIGSTOP) until the two others have elected a leader, which sends
// the mail from the shared record. Resumed, the former leader gets the
// mail server's late refusal and does not send the mail again; a later
// mail of the same server goes once.
func TestStepdownWhileSMTPHangsSendsOnce(t *testing.T) {
	const full = "127.0.0.1:2981"
	servers := []string{full, "127.0.0.1:2982", "127.0.0.1:2983"}
	c, smtp, leader, keep, beats := beatenMailCluster(t, servers)
	load := startVisitors(t, c.members)
	before := downs(t, c.members)

	entered, release := smtp.HangNext()
	defer release()
	beats.set(full, 99)
	select {
	case <-entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the leader did not hand the mail to the SMTP server")
	}
	if err := leader.coord.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	defer func() { _ = leader.coord.cmd.Process.Signal(syscall.SIGCONT) }()
	newLeader := c.waitFormed(t, keep)
	election := time.Since(frozen)
	waitMail(t, smtp, "Simulation server reached maximum load", full+" simulation server has reached maximum load (99.0%).")

	// The former leader resumes, and only then does its hung send fail.
	if err := leader.coord.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.waitFormed(t, c.members)
	release()
	testutil.WaitFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(leader.coord.out.String(), `msg="mail not sent; will retry"`) {
			return errString("the former leader has not had its hung send's answer")
		}
		return nil
	})
	leader.waitReady(t)
	// A fence: a later mail of the same server goes after any copy of the
	// first, from the leader of the day.
	beats.set(full, 10)
	waitMail(t, smtp, "Simulation server available again", full+" simulation server is available again (load = 10.0%).")
	t.Logf("the mail's second leader %s, elected in %v", newLeader.member(t).Name, election.Round(time.Millisecond))

	placed, refused, errs := load.halt()
	mc := countMails(smtp.Messages(), []mailWant{
		{"Simulation server reached maximum load", full}, {"Simulation server available again", full}})
	figures{placed: placed, refused: refused, errors: errs, mails: &mc,
		falseDowns: falseDowns(t, c.members, before, 0), election: election}.report(t)
}

// clockStepFile records a step of this machine's clock not yet undone
// (seconds), so that a run killed in the middle of TestClockStepKeeps…
// has the next run put the clock back first.
var clockStepFile = filepath.Join(os.TempDir(), "simgate-clock-step")

// stepClock moves this machine's wall clock by d (CAP_SYS_TIME), leaving
// its monotonic clock alone, as NTP stepping a clock does.
func stepClock(t *testing.T, d time.Duration) {
	t.Helper()
	tv := syscall.NsecToTimeval(time.Now().Add(d).UnixNano())
	if err := syscall.Settimeofday(&tv); err != nil {
		t.Fatalf("stepping the clock by %v: %v", d, err)
	}
}

// undoStaleClockStep puts back a step a killed run left.
func undoStaleClockStep(t *testing.T) {
	data, err := os.ReadFile(clockStepFile)
	if err != nil {
		return
	}
	if secs, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err == nil {
		stepClock(t, -time.Duration(secs)*time.Second)
		t.Logf("put back a clock step of %d s left by a killed run", secs)
	}
	_ = os.Remove(clockStepFile)
}

// TestClockStepKeepsPendingMail: issue 30. A mail is pending (the SMTP
// server down) when the leader is killed; the new leader takes it over,
// and then the clock steps forward 48 h, twice mail.giveUp: the mail is
// neither abandoned nor sent twice when the SMTP server returns, and the
// cluster places and judges as before, also once the clock steps back (a
// server silent then is down within its timeout).
// Members on one machine share one wall clock (Go reads it through the
// vDSO: neither libfaketime nor a time namespace moves one process's), so
// the step moves every member's clock, the new leader's among them. It
// changes this machine's clock: it runs only when asked
// (SIMGATE_FAULT_CLOCK=1, as scripts/faults.sh does as root).
func TestClockStepKeepsPendingMail(t *testing.T) {
	if os.Getenv("SIMGATE_FAULT_CLOCK") != "1" {
		t.Skip("steps this machine's clock: SIMGATE_FAULT_CLOCK=1 (root) runs it, as scripts/faults.sh does")
	}
	undoStaleClockStep(t)
	const full = "127.0.0.1:2991"
	servers := []string{full, "127.0.0.1:2992", "127.0.0.1:2993"}
	c, smtp, leader, keep, beats := beatenMailCluster(t, servers)
	load := startVisitors(t, keep)
	before := downs(t, keep)

	smtp.SetDown(true)
	beats.set(full, 99)
	testutil.WaitFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(leader.coord.out.String(), `msg="mail not sent; will retry"`) {
			return errString("the leader has not tried the mail yet")
		}
		return nil
	})
	killed := time.Now()
	if code, _ := leader.coord.stop(t, syscall.SIGKILL, 10*time.Second); code == 0 {
		t.Fatal("kill -9 gave exit 0")
	}
	newLeader := c.waitFormed(t, keep)
	election := time.Since(killed)

	const step = 48 * time.Hour
	if err := os.WriteFile(clockStepFile, []byte(strconv.Itoa(int(step.Seconds()))), 0o600); err != nil {
		t.Fatal(err)
	}
	stepClock(t, step)
	stepped := true
	defer func() {
		if stepped {
			stepClock(t, -step)
			_ = os.Remove(clockStepFile)
		}
	}()
	// Two of the new leader's attempts after the step, none abandoning.
	tries := strings.Count(newLeader.coord.out.String(), `msg="mail not sent; will retry"`)
	testutil.WaitFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		if n := strings.Count(newLeader.coord.out.String(), `msg="mail not sent; will retry"`); n < tries+2 {
			return errString("the new leader has not retried the mail since the step")
		}
		return nil
	})
	smtp.SetDown(false)
	waitMail(t, smtp, "Simulation server reached maximum load", full+" simulation server has reached maximum load (99.0%).")
	beats.set(full, 50)
	waitMail(t, smtp, "Simulation server available again", full+" simulation server is available again (load = 50.0%).")

	// Back by 48 h: every member still hears every server, places, mails.
	stepClock(t, -step)
	stepped = false
	_ = os.Remove(clockStepFile)
	second, silent := servers[1], servers[2]
	beats.set(second, 99)
	waitMail(t, smtp, "Simulation server reached maximum load", second+" simulation server has reached maximum load (99.0%).")
	// A server that falls silent after the step back is judged down within
	// its timeout, not 48 h later (silence deadlines on the wall clock were).
	beats.silence(silent)
	for _, f := range keep {
		f.waitState(t, silent, 10*time.Second, "down")
	}
	for _, f := range keep {
		for _, s := range servers[:2] {
			if st := f.servers(t)[s].State; st != "up" && st != "full" {
				t.Errorf("%s is %s on %s after the steps", s, st, f.base)
			}
		}
		if n := f.scrape(t).value("simgate_bookings_stale_total"); n > 0 {
			t.Errorf("%s dropped %v of the other member's bookings as stale", f.base, n)
		}
	}
	for _, f := range keep {
		if strings.Contains(f.coord.out.String(), `msg="mail abandoned"`) {
			t.Errorf("%s abandoned a mail", f.base)
		}
	}
	placed, refused, errs := load.halt()
	mc := countMails(smtp.Messages(), []mailWant{
		{"Simulation server reached maximum load", full}, {"Simulation server available again", full},
		{"Simulation server reached maximum load", second}, {"Simulation server not responding", silent}})
	figures{placed: placed, refused: refused, errors: errs, mails: &mc,
		falseDowns: falseDowns(t, keep, before, 1), election: election}.report(t)
}
