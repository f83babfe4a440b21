package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium (.ci/run installs it) or another Chrome.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SIMGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on this machine (apt-get install chromium); .ci/run installs it")
	return ""
}

// browser starts a headless Chromium with its own profile and no network
// beyond what the page asks for; it is closed when the test ends.
func browser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	exe := chromium(t) // skips the test before anything is made
	profile, err := os.MkdirTemp("", "simgate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in a container has no user namespace for the sandbox
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1200, 800),
		// A closed network: nothing of Chromium's own may try to go out.
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
	)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser process to exit
		cancelTimeout()
		_ = os.RemoveAll(profile)
	})
	return bctx
}

// beatRich publishes a heartbeat with the components the page draws.
func (p *publisher) beatRich(server string, fields map[string]any) {
	p.t.Helper()
	hb := map[string]any{"v": 1, "server": server, "status": "up", "interval": 30, "maxSessions": 20}
	for k, v := range fields {
		hb[k] = v
	}
	data, _ := json.Marshal(hb)
	p.publish(server, data)
}

// card is a JavaScript expression for a server's card on the page.
func card(server string) string {
	return fmt.Sprintf("document.querySelector('article[data-server=%q]')", server)
}

// TestMonitorInBrowser drives the real /monitor page in headless Chromium:
// every server is listed, a load published over NATS shows without reload
// within 2 s, a killed agent's server turns down, nothing is fetched from
// anywhere but the coordinator, and the page fits a phone's width.
func TestMonitorInBrowser(t *testing.T) {
	const (
		pub   = "127.0.0.1/3112"
		hot   = "127.0.0.1/2202"
		drain = "127.0.0.1/2203"
		agent = "127.0.0.1:2204"
		never = "127.0.0.1/2205"
	)
	all := []string{pub, hot, drain, agent, never}
	f := startFarm(t, map[string]any{"simulationServers": all})
	p := f.publisher(t, "monitor-test")
	p.beatRich(pub, map[string]any{"load": 12, "cpu": 12, "memory": 20, "swap": 0, "sessions": 2})
	p.beatRich(hot, map[string]any{"load": 97, "cpu": 97, "memory": 61, "swap": 3, "gpu": 40, "gpuMemory": 35, "vram": 35, "sessions": 19})
	p.beatRich(drain, map[string]any{"status": "draining", "load": 30, "cpu": 30, "memory": 25, "swap": 0, "sessions": 5,
		"sharing": map[string]any{"allowedRepositories": []string{"https://github.com/cyberbotics/"}, "docker": true, "shareIdleTime": 40}})
	killed := f.startAgent(t, agent)
	f.waitState(t, agent, 10*time.Second, "up", "full")
	f.waitState(t, drain, 5*time.Second, "draining")

	ctx := browser(t, 90*time.Second)
	var mu sync.Mutex
	var requests []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		case *network.EventWebSocketCreated:
			requests = append(requests, e.URL)
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(f.base+"/monitor")); err != nil {
		t.Fatalf("opening /monitor: %v", err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("live").textContent === "live (push)"`,
		chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("live").textContent + " | " + document.body.innerText.slice(0, 300)`))
		t.Fatalf("the page's live feed did not connect: %v; page: %s", err, state)
	}
	listed, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("article[data-server]"), a => a.dataset.server)`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(listed, " ") != strings.Join(all, " ") {
		t.Errorf("servers on the page = %v, want %v in configuration order", listed, all)
	}
	// A marker in the page's globals survives only if the page is never reloaded.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.simgateTest = true`)); err != nil {
		t.Fatal(err)
	}

	// A load change published over NATS.
	begin := time.Now()
	p.beatRich(pub, map[string]any{"load": 37.5, "cpu": 37.5, "memory": 22, "swap": 0, "gpu": 10, "vram": 8, "sessions": 4})
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](card(pub)+`.textContent.includes("37.5%")`,
		chromedp.WithPollingTimeout(2*time.Second))); err != nil {
		t.Fatalf("load 37.5%% of %s not on the page within 2 s: %v", pub, err)
	}
	t.Logf("load change on the page %v after it was published", time.Since(begin).Round(time.Millisecond))

	// An agent killed: its connection closes and the card turns down.
	begin = time.Now()
	_ = killed.cmd.Process.Signal(syscall.SIGKILL)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](card(agent)+`.classList.contains("st-down")`,
		chromedp.WithPollingTimeout(2*time.Second))); err != nil {
		t.Fatalf("%s not down on the page within 2 s of its agent being killed: %v", agent, err)
	}
	t.Logf("killed agent's server down on the page %v after SIGKILL", time.Since(begin).Round(time.Millisecond))

	texts, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`(() => {
		const out = {};
		for (const a of document.querySelectorAll("article[data-server]")) out[a.dataset.server] = a.textContent;
		out["#summary"] = document.getElementById("summary").textContent;
		out["#reloaded"] = window.simgateTest === true ? "no" : "yes";
		return out;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ where, want string }{
		{"#reloaded", "no"},
		{hot, "saturated: CPU"},
		{hot, "sessions 19 / 20"},
		{drain, "draining"},
		{drain, "dedicated to https://github.com/cyberbotics/ · shares idle time up to 40% (docker)"},
		{agent, "NATS connection closed"},
		{never, "not heard from since the coordinator started"},
		{"#summary", "servers available"},
	} {
		if !strings.Contains(texts[c.where], c.want) {
			t.Errorf("%s on the page = %q, want it to contain %q", c.where, texts[c.where], c.want)
		}
	}

	// The capacity section: the day's plot, and what the what-if says
	// (here: nothing to plan from, no session having run).
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector("#cap-plot svg.cap") !== null && `+
		`document.getElementById("cap-note").textContent.includes("what-if")`, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		note, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("capacity").textContent`))
		t.Errorf("the capacity section did not show its plot and what-if: %v; section: %q", err, note)
	}

	shots := screenshotDir(t)
	shoot(t, ctx, filepath.Join(shots, "monitor.png"))

	// Phone width: nothing wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.documentElement.scrollWidth - window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow > 0 {
		t.Errorf("at 390 px the page is %v px wider than the screen", overflow)
	}
	shoot(t, ctx, filepath.Join(shots, "monitor-phone.png"))

	mu.Lock()
	defer mu.Unlock()
	base, _ := url.Parse(f.base)
	for _, r := range requests {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "data" && u.Host != base.Host) {
			t.Errorf("the page fetched %s: only %s may be asked", r, base.Host)
		}
	}
	t.Logf("requests the page made: %v", requests)
}

// screenshotDir is SIMGATE_SCREENSHOTS when set (the README's image is made
// that way), else a temporary folder that is kept, and logged, only when the
// test fails.
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SIMGATE_SCREENSHOTS"); d != "" {
		return d
	}
	d, err := os.MkdirTemp("", "simgate-monitor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("screenshots kept in %s", d)
			return
		}
		_ = os.RemoveAll(d)
	})
	return d
}

func shoot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot saved: %s", path)
}
