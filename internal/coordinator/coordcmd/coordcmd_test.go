package coordcmd

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/simgate/simgate/internal/notify/smtptest"
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
			if got := Run([]string{missing}, io.Discard, io.Discard); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
			if got := Run([]string{"a.json", "b.json"}, io.Discard, io.Discard); got != tc.want {
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
	if got := Run([]string{path}, io.Discard, &stderr); got != 2 {
		t.Fatalf("exit %d, want 2", got)
	}
	for _, want := range []string{`"simulationServer"`, `"simulationServers"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("message %q does not name %s", stderr.String(), want)
		}
	}
}

// TestCommandLine: the flags and the file, read as PROTOCOL §3 says.
func TestCommandLine(t *testing.T) {
	warned := filepath.Join(t.TempDir(), "warned.json")
	if err := os.WriteFile(warned, []byte(`{"port": "2001", "simulationServers": ["127.0.0.1:2000"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	clean := filepath.Join(t.TempDir(), "clean.json")
	if err := os.WriteFile(clean, []byte(`{"port": 2001, "simulationServers": ["127.0.0.1:2000"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		status int
		out    string
	}{
		{"version", []string{"-version"}, 0, "simgate coordinator"},
		{"help", []string{"-h"}, 0, ""},
		{"unknown flag", []string{"-nope"}, 2, ""},
		{"check a clean file", []string{"-check", clean}, 0, "configuration OK"},
		{"check a file with warnings", []string{"-check", warned}, 1, "1 warning(s)"},
		{"a bad -nats-listen", []string{"-check", "-nats-listen", "nowhere", clean}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout strings.Builder
			if got := Run(tc.args, &stdout, io.Discard); got != tc.status || !strings.Contains(stdout.String(), tc.out) {
				t.Errorf("exit %d, output %q; want %d and %q", got, stdout.String(), tc.status, tc.out)
			}
		})
	}
	o, _, done := parse([]string{"-port", "0", "-nats-listen", "127.0.0.1:0", "-listen-file", "l.json", clean}, io.Discard, io.Discard)
	if done || o.cfg.Port != 0 || o.cfg.NATS.Listen != "127.0.0.1:0" || o.listenFile != "l.json" {
		t.Errorf("flags over the file: %+v", o)
	}
}

// TestCheckMail: -check -mail connects to the mail server as a mail would
// and says whether its TLS certificate verifies (issue 32: a self-signed
// SMTP certificate is the commonest first-day mail failure, and -check
// said nothing of it).
func TestCheckMail(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, srv.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	host, port, _ := net.SplitHostPort(srv.Addr)
	for _, tc := range []struct {
		name   string
		port   string
		mail   string // the file's "mail" object
		status int
		want   string
	}{
		{"a certificate that does not verify", port, `{"verifyCertificate": true}`, 1, "give its CA in mail.caFile"},
		{"its CA given", port, `{"verifyCertificate": true, "caFile": "` + ca + `"}`, 0, "verifies"},
		{"a local server, not verified", port, `{}`, 0, "is not verified"},
		{"nobody there", strconv.Itoa(closedPort), `{}`, 1, "check mailServer and mailServerPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "session.json")
			cfg := fmt.Sprintf(`{"port": 2001, "simulationServers": ["127.0.0.1:2000"], "administrator": "admin@example.org",
  "mailServer": %q, "mailServerPort": %s, "mailSender": "sender@example.org", "mailSenderPassword": %q, "mail": %s}`,
				host, tc.port, srv.Password, tc.mail)
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr strings.Builder
			got := Run([]string{"-check", "-mail", path}, &stdout, &stderr)
			if out := stdout.String() + stderr.String(); got != tc.status || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output %q; want %d and %q", got, out, tc.status, tc.want)
			}
		})
	}
}
