package e2e

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// TestAgentSaysWhatToFix: each way a newcomer's agent fails to join says
// what failed and what to change, tested by its words: a wrong password
// (credentials, not the firewall), a certificate of an unknown CA (-ca), a
// server its user may not publish for (the user's servers), a URL without
// a scheme (nats://…), the coordinator's HTTP port given for NATS; and a
// normal stop logs no error.
func TestAgentSaysWhatToFix(t *testing.T) {
	const mine, other = "127.0.0.1:2901", "127.0.0.1:2902"
	cert, key := testutil.TLSFiles(t)
	f := startFarm(t, map[string]any{
		"simulationServers": []string{mine, other},
		"nats": map[string]any{"listen": "127.0.0.1:0", "tls": map[string]any{"cert": cert, "key": key},
			"users": []map[string]any{{"user": "sim", "password": "sim-secret", "role": "agent", "servers": []string{mine}}}},
	})
	base := []string{"-interval", "200ms", "-probe", "off", "-simulation-config", "off"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"wrong password", []string{"-nats", f.nats, "-ca", cert, "-server", mine, "-user", "sim", "-password", "wrong"},
			[]string{"refused this agent's credentials", "-password", "nats.users"}},
		{"unknown CA", []string{"-nats", f.nats, "-server", mine, "-user", "sim", "-password", "sim-secret"},
			[]string{"does not verify", "-ca"}},
		{"refused publish", []string{"-nats", f.nats, "-ca", cert, "-server", other, "-user", "sim", "-password", "sim-secret"},
			[]string{"right to speak for " + other, "in its servers"}},
		{"HTTP port", []string{"-nats", strings.Replace(f.base, "http://", "tls://", 1), "-ca", cert, "-server", mine, "-user", "sim", "-password", "sim-secret"},
			[]string{"HTTP port", "nats.listen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := start(t, f.agent, append(append([]string{}, base...), tc.args...)...)
			testutil.WaitFor(t, 20*time.Second, 20*time.Millisecond, func() error {
				out := a.out.String()
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						return errString("the agent has not said " + w + ":\n" + out)
					}
				}
				return nil
			})
		})
	}
	t.Run("no scheme", func(t *testing.T) {
		out, err := exec.Command(f.agent, "-nats", "127.0.0.1:4222", "-server", mine).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "nats://127.0.0.1:4222") {
			t.Errorf("%v: %s; want exit 2 suggesting nats://127.0.0.1:4222", err, out)
		}
	})
	t.Run("a normal stop", func(t *testing.T) {
		a := start(t, f.agent, append(append([]string{}, base...), "-nats", f.nats, "-ca", cert, "-server", mine, "-user", "sim", "-password", "sim-secret")...)
		f.waitState(t, mine, 10*time.Second, "up", "full")
		a.stop(t, syscall.SIGTERM, 10*time.Second)
		if out := a.out.String(); strings.Contains(out, "level=ERROR") || strings.Contains(out, "error=<nil>") || strings.Contains(out, "disconnected from NATS") {
			t.Errorf("a normal stop logged a failure:\n%s", out)
		}
	})
}
