package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

// natsCLI finds the real nats CLI: $SIMGATE_NATS_CLI, else `nats` on PATH
// (.ci/run installs the pinned version).
func natsCLI(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SIMGATE_NATS_CLI"); p != "" {
		return p
	}
	p, err := exec.LookPath("nats")
	if err != nil {
		t.Skip("the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.1 (.ci/run installs it)")
	}
	return p
}

var nextHeading = regexp.MustCompile(`\n#{2,6} `)

// readmeCommands returns the commands of the README's section titled
// heading ("Operating" for "## Operating", "### Apache" for a
// subsection): readmeBlocks, one after the other.
func readmeCommands(t *testing.T, heading string) []string {
	t.Helper()
	var cmds []string
	for _, b := range readmeBlocks(t, heading) {
		cmds = append(cmds, b...)
	}
	return cmds
}

// readmeBlocks returns the ```sh blocks of the README's section titled
// heading, each as its commands: indented blocks in lists included,
// continuation lines joined, comment lines left out. The section ends at
// the next heading, a subsection's included.
func readmeBlocks(t *testing.T, heading string) [][]string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	level := "## "
	if strings.HasPrefix(heading, "#") {
		level, heading, _ = strings.Cut(heading, " ")
		level += " "
	}
	_, section, ok := strings.Cut(string(data), "\n"+level+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", level+heading)
	}
	if loc := nextHeading.FindStringIndex(section); loc != nil {
		section = section[:loc[0]]
	}
	var blocks [][]string
	var block []string
	in := false
	var cur string
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "```sh"):
			in, block = true, nil
		case in && strings.HasPrefix(line, "```"):
			in = false
			blocks = append(blocks, block)
		case in && line != "" && !strings.HasPrefix(line, "#"):
			if strings.HasSuffix(line, "\\") {
				cur += strings.TrimSuffix(line, "\\") + " "
				continue
			}
			block = append(block, strings.TrimSpace(cur+line))
			cur = ""
		}
	}
	return blocks
}

// TestOperatingCommands runs every command of the README's "Operating"
// section, as written, with the real nats CLI against a real coordinator
// and agent, and checks what each one shows; the transcript is the test's
// log (-v). A monitor user's drain is refused; an admin's shows on the
// monitor's document as "drained by admin".
func TestOperatingCommands(t *testing.T) {
	cli := natsCLI(t)
	// The README names the seed's server; here it is a loopback address
	// (a polled name would be looked up), put in its place in each command.
	const readmeEntry, readmeNode = "cyberbotics1.epfl.ch/2000", "cyberbotics1_epfl_ch_2000"
	const entry, node = "127.0.0.1/3401", "127_0_0_1_3401"
	f := startFarm(t, map[string]any{
		"simulationServers": []string{entry},
		"nats": map[string]any{"listen": "127.0.0.1:0", "users": []map[string]any{
			{"user": "sim1", "password": "sim1-password", "role": "agent", "servers": []string{entry}},
			{"user": "ops", "password": "ops-password", "role": "monitor"},
			{"user": "admin", "password": "admin-password", "role": "admin"},
			{"user": "sysop", "password": "sysop-password", "role": "system"},
		}},
	})
	quiet, _ := filepath.Abs("../internal/agent/testdata/proc-idle")
	agent := startEnv(t, "", []string{"HOST_PROC=" + quiet}, f.agent, "-nats", f.nats, "-server", entry,
		"-user", "sim1", "-password", "sim1-password", "-interval", "200ms", "-probe", "off", "-simulation-config", "off")
	f.waitState(t, entry, 10*time.Second, "up")

	home := t.TempDir()
	env := append(os.Environ(), "XDG_CONFIG_HOME="+home, "HOME="+home,
		"PATH="+filepath.Dir(cli)+string(os.PathListSeparator)+os.Getenv("PATH"))
	// prepare is the README's command as run here: this coordinator, this CLI.
	prepare := func(ctx context.Context, cmd string) *exec.Cmd {
		cmd = strings.NewReplacer("nats://session.example.org:4222", f.nats, readmeEntry, entry, readmeNode, node).Replace(cmd)
		c := exec.CommandContext(ctx, "sh", "-c", strings.Replace(cmd, "nats ", cli+" ", 1))
		c.Env = env
		return c
	}
	run := func(cmd string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := prepare(ctx, cmd).CombinedOutput()
		t.Logf("$ %s\n%s", cmd, out)
		return string(out), err
	}
	// watch runs a command that does not end, does what should show in it,
	// and waits until its output holds want.
	watch := func(cmd, ready string, act func(), want string) {
		t.Helper()
		c := prepare(context.Background(), cmd)
		out := &testutil.Buffer{}
		c.Stdout, c.Stderr = out, out
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			_ = c.Wait()
			t.Logf("$ %s\n%s", cmd, out.String())
		}()
		testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if !strings.Contains(out.String(), ready) {
				return fmt.Errorf("%q not ready: %q", cmd, out.String())
			}
			return nil
		})
		// The CLI says it subscribes before the server has the
		// subscription: act again until it shows.
		last := time.Time{}
		testutil.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if strings.Contains(out.String(), want) {
				return nil
			}
			if act != nil && time.Since(last) >= 300*time.Millisecond {
				act()
				last = time.Now()
			}
			return fmt.Errorf("%q shows no %q yet", cmd, want)
		})
	}
	must := func(cmd string, wants ...string) {
		t.Helper()
		out, err := run(cmd)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q", cmd, w)
			}
		}
	}
	adminDrain := func(on bool) {
		t.Helper()
		verb := map[bool]string{true: "drain", false: "undrain"}[on]
		if out, err := run("nats --context simgate-admin req simgate.api." + verb + "." + node + " ''"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}

	cmds := readmeCommands(t, "Operating")
	if len(cmds) < 15 {
		t.Fatalf("the Operating section has %d commands", len(cmds))
	}
	for _, cmd := range cmds {
		switch {
		case strings.Contains(cmd, "context save"):
			must(cmd)
		case strings.Contains(cmd, "req simgate.api.servers"):
			must(cmd, `"server":"`+entry+`"`, `"state":"up"`)
		case strings.HasSuffix(cmd, "micro ls"):
			must(cmd, "simgate", "the simgate farm")
		case strings.Contains(cmd, "micro info simgate"):
			must(cmd, "simgate.api.servers", "simgate.api.drain.*", "simgate.api.session", "simgate.api.capacity")
		case strings.Contains(cmd, "micro stats simgate"):
			must(cmd, "servers", "drain")
		case strings.Contains(cmd, "kv get simgate-servers"):
			must(cmd, `"server":"`+entry+`"`, `"state":"up"`, `"reason":`)
		case strings.Contains(cmd, "kv watch simgate-servers"):
			watch(cmd, node, nil, `"server":"`+entry+`"`)
		case strings.Contains(cmd, "req simgate.api.drain."):
			must(cmd, `"drained":true`, `"by":"admin"`)
			f.waitState(t, entry, 5*time.Second, "draining")
			if s := f.servers(t)[entry]; s.Reason != "drained by admin" {
				t.Errorf("reason %q", s.Reason)
			}
		case strings.Contains(cmd, "req simgate.api.undrain."):
			must(cmd, `"drained":false`)
			f.waitState(t, entry, 5*time.Second, "up")
		case strings.Contains(cmd, "sub 'simgate.booking.>'"):
			watch(cmd, "Subscribing on", func() {
				if _, body, err := get(f.base + "/session"); err != nil || body != "ws://"+entry {
					t.Errorf("/session: %q %v", body, err)
				}
			}, "simgate.booking."+node)
		case strings.Contains(cmd, "sub 'simgate.event.>'"):
			watch(cmd, "Subscribing on", func() { adminDrain(true); adminDrain(false) }, "simgate.event.draining."+node)
			f.waitState(t, entry, 5*time.Second, "up")
		case strings.Contains(cmd, "req simgate.api.capacity"):
			must(cmd, `"whatIf":`, `"computing":`)
		case strings.Contains(cmd, "req simgate.api.session"):
			must(cmd, "ws://"+entry)
		case strings.HasSuffix(cmd, "server list"):
			must(cmd, "Server Overview", "simgate-")
		case strings.HasSuffix(cmd, "server ping"):
			must(cmd, "1 replies")
		case strings.HasSuffix(cmd, "server report connections"):
			must(cmd, entry, "simgate-coordinator-intake")
		case strings.HasSuffix(cmd, "server report jetstream"):
			must(cmd, "JetStream Summary")
		case strings.Contains(cmd, "pub --connection-name"):
			// The agent's connection closes: down at once; the leaving
			// heartbeat by hand, on a connection named after the server,
			// is taken: a planned stop.
			if code, _ := agent.stop(t, syscall.SIGKILL, 10*time.Second); code == 0 {
				t.Fatal("kill -9 gave exit 0")
			}
			f.waitState(t, entry, 5*time.Second, "down")
			must(cmd)
			testutil.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
				if s := f.servers(t)[entry]; s.Reason != "its agent stopped (planned)" {
					return fmt.Errorf("%s: %s (%s), want the planned stop", entry, s.State, s.Reason)
				}
				return nil
			})
			if n := f.scrape(t).value("simgate_heartbeats_dropped_total", "reason", "closed-connection"); n > 0 {
				t.Errorf("%v heartbeats dropped as closed-connection", n)
			}
		default:
			t.Errorf("no check for the README's command %q: add one", cmd)
		}
	}

	// A monitor user may not drain (the CLI says so, and exits 0).
	if out, _ := run("nats --context simgate req simgate.api.drain." + node + " ''"); !strings.Contains(out, "Permissions Violation for Publish") {
		t.Errorf("a monitor's drain:\n%s", out)
	}
	if s := f.servers(t)[entry]; s.State == "draining" {
		t.Error("a monitor drained a server")
	}
}
