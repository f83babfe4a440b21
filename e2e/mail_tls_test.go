package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/notify/smtptest"
	"github.com/simgate/simgate/internal/testutil"
)

// TestMailThroughASelfSignedServer: a mail server whose certificate is
// self-signed (a local Postfix). On this machine, with no mail.caFile, it
// is accepted as the original accepted it, and the mail goes. Where the
// certificate must verify (mail.verifyCertificate true), the start says at
// once that mail cannot be delivered, naming the server and the keys that
// fix it, and /api/servers (summary.alerts) and the monitor page say so.
func TestMailThroughASelfSignedServer(t *testing.T) {
	smtp := smtptest.Start(t, "127.0.0.1:0")
	host, port, _ := strings.Cut(smtp.Addr, ":")
	var mailPort int
	fmt.Sscan(port, &mailPort)
	base := func(extra map[string]any) map[string]any {
		cfg := map[string]any{
			"simulationServers": []string{"127.0.0.1:9"}, // never heard from: "not responding" after the grace
			"administrator":     "admin@example.org", "mailServer": host, "mailServerPort": mailPort,
			"mailSender": "sender@example.org", "mailSenderPassword": smtp.Password,
			"mail": map[string]any{"grace": 1, "retryMax": 1},
		}
		for k, v := range extra {
			cfg[k] = v
		}
		return cfg
	}
	t.Run("local, accepted as the original did", func(t *testing.T) {
		startFarm(t, base(nil))
		waitMail(t, smtp, "Simulation server not responding", "127.0.0.1:9 simulation server may be down")
	})
	t.Run("verified: said at once", func(t *testing.T) {
		f := startFarm(t, base(map[string]any{"mail": map[string]any{"grace": 3600, "retryMax": 1, "verifyCertificate": true}}))
		testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			out := f.coord.out.String()
			for _, want := range []string{"level=ERROR", "certificate does not verify", "mail.caFile", "mail.verifyCertificate", "server=" + host} {
				if !strings.Contains(out, want) {
					return fmt.Errorf("the start has not said %q", want)
				}
			}
			return nil
		})
		testutil.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			_, body, err := get(f.base + "/api/servers")
			if err != nil || !strings.Contains(body, `"alerts":["mail cannot be delivered to `) {
				return fmt.Errorf("/api/servers says nothing of mail: %v %s", err, body)
			}
			_, page, _ := get(f.base + "/monitor")
			if !strings.Contains(page, "mail cannot be delivered") {
				return fmt.Errorf("the monitor page says nothing of mail")
			}
			return nil
		})
	})
}
