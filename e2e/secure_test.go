package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/testutil"
)

// TestSecureTwoMachineSetup runs the README's secure setup: NATS on every
// interface with TLS and users, a real agent connecting with a password and
// the CA, a forged heartbeat refused and counted, a wrong password refused
// with a log line, and a planned stop still acknowledged under permissions.
func TestSecureTwoMachineSetup(t *testing.T) {
	const sim1, sim2 = "127.0.0.1/3115", "127.0.0.1/3116"
	cert, key := testutil.TLSFiles(t)
	f := startFarm(t, map[string]any{
		"simulationServers": []string{sim1, sim2},
		"nats": map[string]any{
			"listen": "0.0.0.0:0",
			"tls":    map[string]any{"cert": cert, "key": key},
			"users": []map[string]any{
				{"user": "sim1", "password": "sim1-secret", "role": "agent", "servers": []string{sim1}},
				{"token": "sim2-token-0123456789abcdef", "role": "agent", "servers": []string{sim2}},
				{"user": "ops", "password": "ops-secret", "role": "monitor"},
			},
		},
	})
	url := f.nats
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("NATS URL %s: want tls://", url)
	}

	a1 := start(t, f.agent, "-nats", url, "-server", sim1, "-interval", "200ms", "-probe", "off",
		"-user", "sim1", "-password", "sim1-secret", "-ca", cert)
	f.waitState(t, sim1, 10*time.Second, "up", "full")

	// The token agent's heartbeats arrive too.
	tok, err := nats.Connect(url, nats.Name(sim2), nats.Token("sim2-token-0123456789abcdef"), nats.RootCAs(cert),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the violation below is expected
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	pub := &publisher{t: t, nc: tok}
	pub.send(sim2, "up", 10, 30)
	f.waitState(t, sim2, 5*time.Second, "up")

	// sim2's agent forges a heartbeat for sim1: the server refuses it and
	// the coordinator counts it; sim1's state is untouched.
	before := f.scrape(t).value("simgate_heartbeats_dropped_total", "reason", "permission")
	pub.send(sim1, "up", 0.5, 30)
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		got := f.scrape(t).value("simgate_heartbeats_dropped_total", "reason", "permission")
		if got != max(before, 0)+1 {
			return fmt.Errorf("permission drops = %v, want %v", got, max(before, 0)+1)
		}
		return nil
	})
	if l := f.servers(t)[sim1].Load; l == 0.5 {
		t.Error("a forged heartbeat changed sim1's load")
	}

	// An agent with a wrong password never gets in, and both sides say so.
	bad := start(t, f.agent, "-nats", url, "-server", sim1, "-interval", "200ms", "-probe", "off",
		"-user", "sim1", "-password", "wrong", "-ca", cert)
	testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(f.coord.out.String(), "NATS connection refused") {
			return fmt.Errorf("the coordinator did not log the refusal")
		}
		if !strings.Contains(strings.ToLower(bad.out.String()), "authorization") {
			return fmt.Errorf("the agent did not log the refusal")
		}
		return nil
	})
	for _, p := range []*proc{f.coord, a1, bad} {
		for _, secret := range []string{"sim1-secret", "sim2-token", "ops-secret"} {
			if strings.Contains(p.out.String(), secret) {
				t.Errorf("a log shows a secret (%s…)", secret[:4])
			}
		}
	}

	// The monitor user reads heartbeats, read-only, as the README's nats CLI line does.
	mon, err := nats.Connect(url, nats.UserInfo("ops", "ops-secret"), nats.RootCAs(cert))
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	sub, err := mon.SubscribeSync("simgate.load.>")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("the monitor user read no heartbeat: %v", err)
	}

	// A planned stop under permissions: the leaving heartbeat is acknowledged.
	if code, _ := a1.stop(t, syscall.SIGTERM, 5*time.Second); code != 0 {
		t.Errorf("agent exit status %d", code)
	}
	if !strings.Contains(a1.out.String(), "leaving heartbeat acknowledged") {
		t.Errorf("the leaving heartbeat was not acknowledged:\n%s", a1.out.String())
	}
	f.waitState(t, sim1, 2*time.Second, "down")
	if r := f.servers(t)[sim1].Reason; !strings.Contains(r, "planned") {
		t.Errorf("reason = %q, want the planned stop", r)
	}
}
