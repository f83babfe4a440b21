package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
)

// TestAdminDrainsOnTheMonitorPage: an admin opens /monitor?admin with its
// NATS credentials, drains a server with the page's button ("drained by
// admin" on the page and in /api/servers), the drain survives a
// coordinator restart, and undrains it; the anonymous page has no button,
// and a monitor user's credentials drain nothing.
func TestAdminDrainsOnTheMonitorPage(t *testing.T) {
	const server = "127.0.0.1/2300"
	f := startFarm(t, map[string]any{
		"simulationServers": []string{server},
		"nats": map[string]any{"listen": "127.0.0.1:0", "users": []map[string]any{
			{"user": "sim", "password": "sim-password", "role": "agent", "servers": []string{server}},
			{"user": "ops", "password": "ops-password", "role": "monitor"},
			{"user": "admin", "password": "admin-password", "role": "admin"},
		}},
	})
	beat := func() {
		t.Helper()
		nc, err := nats.Connect(f.nats, nats.Name(server), nats.UserInfo("sim", "sim-password"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		hb := fmt.Sprintf(`{"v":1,"server":%q,"status":"up","load":10,"interval":30,"maxSessions":20}`, server)
		if err := nc.Publish("simgate.load."+node(server), []byte(hb)); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
	}
	beat()
	f.waitState(t, server, 5*time.Second, "up")

	// A monitor user is no admin: asked again, and its drain refused.
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	post := func(auth, action, origin string, withHeader bool) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.base+"/monitor",
			bytes.NewReader([]byte(fmt.Sprintf(`{"action":%q,"server":%q}`, action, server))))
		req.Header.Set("Authorization", auth)
		if withHeader {
			req.Header.Set("X-Simgate-Action", action)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	req, _ := http.NewRequest(http.MethodGet, f.base+"/monitor?admin", nil)
	req.Header.Set("Authorization", basic("ops", "ops-password"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized ||
		!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("/monitor?admin as a monitor user: %v %v", resp, err)
	}
	for _, c := range []struct {
		name, auth, origin string
		header             bool
		want               int
	}{
		{"a monitor user", basic("ops", "ops-password"), "", true, http.StatusUnauthorized},
		{"a wrong password", basic("admin", "nope"), "", true, http.StatusUnauthorized},
		{"an admin from another site", basic("admin", "admin-password"), "https://evil.example", true, http.StatusForbidden},
		{"an admin's form (no X-Simgate-Action)", basic("admin", "admin-password"), "", false, http.StatusForbidden},
	} {
		if got := post(c.auth, "drain", c.origin, c.header); got != c.want {
			t.Errorf("drain by %s: %d, want %d", c.name, got, c.want)
		}
	}
	if s := f.servers(t)[server]; s.State != "up" {
		t.Fatalf("refused drains drained it: %+v", s)
	}

	ctx := browser(t, 90*time.Second)
	// The anonymous page: no button.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.base+"/monitor")); err != nil {
		t.Fatal(err)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("button.act").length`)); err != nil || n != 0 {
		t.Errorf("the anonymous page has %d drain buttons (%v)", n, err)
	}
	// The admin's page: the browser sends the admin's credentials.
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders,
		network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": basic("admin", "admin-password")}}); err != nil {
		t.Fatal(err)
	}
	click := func(action, wantText, wantState string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(f.base+"/monitor?admin")); err != nil {
			t.Fatal(err)
		}
		sel := fmt.Sprintf(`article[data-server=%q] button.act[data-action=%q]`, server, action)
		if err := chromedp.Do(ctx, chromedp.Click(sel)); err != nil {
			t.Fatalf("clicking %s: %v", action, err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](card(server)+fmt.Sprintf(`.textContent.includes(%q)`, wantText),
			chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](card(server)+`.textContent`))
			t.Fatalf("after %s the card says %q, want %q: %v", action, text, wantText, err)
		}
		f.waitState(t, server, 5*time.Second, wantState)
	}
	click("drain", "drained by admin", "draining")
	if s := f.servers(t)[server]; s.Reason != "drained by admin" {
		t.Errorf("/api/servers reason %q", s.Reason)
	}

	// The drain outlives the coordinator.
	if code, _ := f.coord.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("coordinator exit %d", code)
	}
	f.restart(t)
	beat()
	f.waitState(t, server, 5*time.Second, "draining")
	if s := f.servers(t)[server]; s.Reason != "drained by admin" {
		t.Errorf("after a restart the reason is %q", s.Reason)
	}
	click("undrain", "load", "up")
	if s := f.servers(t)[server]; s.Reason == "drained by admin" {
		t.Errorf("still drained: %+v", s)
	}
}
