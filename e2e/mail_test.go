package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/notify/smtptest"
	"github.com/simgate/simgate/internal/testutil"
)

// waitMail waits until a mail with subject, its body opening as the
// original's did ("Hello,", a blank line, then opening), has arrived.
func waitMail(t *testing.T, srv *smtptest.Server, subject, opening string) {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		var subjects []string
		for _, m := range srv.Messages() {
			if strings.Contains(m.Data, "Subject: "+subject+"\r\n") && strings.Contains(m.Data, "\r\n\r\nHello,\r\n\r\n"+opening) {
				if m.From != "sender@example.org" || len(m.To) != 1 || m.To[0] != "admin@example.org" || m.User != "sender@example.org" {
					t.Errorf("envelope %+v", m)
				}
				return nil
			}
			subjects = append(subjects, strings.SplitN(strings.SplitN(m.Data, "Subject: ", 2)[1], "\r\n", 2)[0])
		}
		return fmt.Errorf("no mail %q opening %q; mails so far %q", subject, opening, subjects)
	})
}

func TestMailsAndEvents(t *testing.T) {
	const agentS, direct, pending = "127.0.0.1/2401", "127.0.0.1:2402", "127.0.0.1:2403"
	smtp := smtptest.Start(t, "127.0.0.1:0")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, smtp.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	host, port := strings.Split(smtp.Addr, ":")[0], strings.Split(smtp.Addr, ":")[1]
	var mailPort int
	fmt.Sscan(port, &mailPort)
	logDir := t.TempDir()
	f := startFarm(t, map[string]any{
		"simulationServers": []string{agentS, direct, pending}, "server": "sessions.example.org",
		"administrator": "admin@example.org", "mailServer": host, "mailServerPort": mailPort,
		"mailSender": "sender@example.org", "mailSenderPassword": smtp.Password, "logDir": logDir,
		"mail": map[string]any{"caFile": ca, "grace": 3600, "retryMax": 1},
	})

	// Every event on simgate.event.>, as an operator's subscriber sees them.
	nc, err := nats.Connect(f.nats, nats.Name("event-watcher"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	var events []string
	if _, err := nc.Subscribe("simgate.event.>", func(m *nats.Msg) {
		var ev struct{ Server, Kind, From, To, Reason, Time string }
		if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Time == "" || ev.To == "" {
			t.Errorf("event %s: %s", m.Subject, m.Data)
		}
		mu.Lock()
		events = append(events, ev.Kind+" "+ev.Server)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()

	// The agent's process dies: not responding; it comes back: working again.
	a := f.startAgent(t, agentS)
	f.waitState(t, agentS, 5*time.Second, "up", "full")
	_ = a.cmd.Process.Kill()
	took := f.waitState(t, agentS, time.Second, "down")
	t.Logf("connection loss → unplaceable in %v", took)
	waitMail(t, smtp, "Simulation server not responding", agentS+" simulation server may be down, as it is not responding to the requests of the session server...")
	f.startAgent(t, agentS)
	f.waitState(t, agentS, 5*time.Second, "up", "full")
	waitMail(t, smtp, "Simulation server working again", agentS+" simulation server is up and running again (load = ")

	// Load at and above the threshold, then back down.
	pub := f.publisher(t, "direct-publisher")
	pub.beat(direct, "up", 10)
	pub.beat(direct, "up", 97)
	waitMail(t, smtp, "Simulation server reached maximum load", direct+" simulation server has reached maximum load (97.0%).")
	pub.beat(direct, "up", 40)
	waitMail(t, smtp, "Simulation server available again", direct+" simulation server is available again (load = 40.0%).")
	if m := smtp.Messages()[0]; !strings.Contains(m.Data, "Check it at http://sessions.example.org:") {
		t.Errorf("monitor link missing:\n%s", m.Data)
	}

	// Silence: heartbeats every 200 ms, then none: down after 3 intervals.
	pub.beatEvery(direct, 10, 0.2)
	pub.beatEvery(direct, 10, 0.2)
	pub.send(direct, "up", 10, 0.2)
	last := time.Now()
	f.waitState(t, direct, 3*time.Second, "down")
	t.Logf("silence → unplaceable %v after the last heartbeat (interval 200 ms)", time.Since(last))

	testutil.WaitFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		got := strings.Join(events, ",")
		for _, want := range []string{"down " + agentS, "full " + direct, "available " + direct, "down " + direct} {
			if !strings.Contains(got, want) {
				return fmt.Errorf("event %q not seen in %s", want, got)
			}
		}
		// Back after the down: the real agent measures this machine, which,
		// busy with the other tests, may make it come back full rather than up.
		down := slices.Index(events, "down "+agentS)
		if !slices.ContainsFunc(events[down+1:], func(e string) bool { return e == "up "+agentS || e == "full "+agentS }) {
			return fmt.Errorf("no up or full event for %s after its down in %s", agentS, got)
		}
		return nil
	})

	// The SMTP server goes away; a mail waits; /session is not held up; it comes back.
	smtp.SetDown(true)
	pub.beat(pending, "up", 10)
	f.waitState(t, pending, time.Second, "up")
	pub.beat(pending, "up", 99) // "reached maximum load", queued
	f.waitState(t, pending, time.Second, "full")
	var worst time.Duration
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		begin := time.Now()
		if _, _, err := get(f.base + "/session"); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(begin))
	}
	t.Logf("slowest /session during the SMTP outage: %v", worst)
	if worst > time.Second { // the mail path must not be on /session's; speed itself is the benchmarks' business
		t.Errorf("/session took %v while mail was failing", worst)
	}

	// The coordinator stops with that mail pending and starts again with SMTP back.
	// It is kept in the state bucket under logDir (JetStream's store).
	if code, _ := f.coord.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("coordinator exit %d", code)
	}
	if out := f.coord.out.String(); !strings.Contains(out, "mails still pending at stop; they will be sent after the next start") {
		t.Fatalf("no pending mail kept:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(logDir, "session", "nats", "jetstream")); err != nil {
		t.Fatalf("no state store under logDir: %v", err)
	}
	smtp.SetDown(false)
	f.restart(t)
	waitMail(t, smtp, "Simulation server reached maximum load", pending+" simulation server has reached maximum load (99.0%).")
}
