package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// The page must work with the network unplugged: nothing in its HTML, CSS or
// script may name a resource anywhere but the coordinator that served it.
func TestMonitorAssetsAreSelfContained(t *testing.T) {
	for _, tc := range []struct {
		asset, text string
		forbidden   []string
	}{
		{"monitor.html", monitorHTML, []string{`(?i)<link[^>]+stylesheet`, `(?i)\ssrc\s*=`, `(?i)https?://`, `(?i)@import`, `(?i)url\(`}},
		{"monitor.css", monitorCSS, []string{`(?i)url\(`, `(?i)@import`, `(?i)https?://`, `(?i)@font-face`}},
		{"monitor.js", monitorJS, []string{`(?i)https?://`, `(?i)import\s*\(`, `(?i)importScripts`, `(?i)XMLHttpRequest`, `(?i)\.src\s*=`, `(?i)createElement\(\s*["']script`}},
	} {
		t.Run(tc.asset, func(t *testing.T) {
			for _, pat := range tc.forbidden {
				if loc := regexp.MustCompile(pat).FindStringIndex(tc.text); loc != nil {
					t.Errorf("%s has %q (%s): it would load from elsewhere", tc.asset, tc.text[loc[0]:loc[1]], pat)
				}
			}
		})
	}
	// The only links the page makes go back where it came from.
	for _, m := range regexp.MustCompile(`(fetch|new WebSocket)\(([^;]*)`).FindAllStringSubmatch(monitorJS, -1) {
		if !strings.Contains(m[2], "location.") {
			t.Errorf("monitor.js: %s(%s does not stay on the page's own host", m[1], m[2])
		}
	}
	for _, m := range regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(monitorHTML, -1) {
		if m[1] != "data:," && m[1] != "{{.Link}}" {
			t.Errorf("monitor.html: href %q is neither inline nor a server's own page", m[1])
		}
	}
}

func TestMonitorPageRenders(t *testing.T) {
	servers := []string{"a.test/2000", "b.test:2001", `c.test/"><script>`}
	reg := alloc.New(alloc.Options{Servers: servers, Threshold: 95, Seed: 1})
	for _, r := range []alloc.Report{
		{Server: servers[0], Status: alloc.StatusUp, Load: 40, Sessions: 3, MaxSessions: 10, Interval: time.Second, At: time.Now()},
		{Server: servers[1], Status: alloc.StatusUp, Load: 97, Vector: alloc.Vector{CPU: ptr(97.0)}, Sessions: -1, Interval: time.Second, At: time.Now()},
	} {
		if err := reg.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	api := New(Options{Registry: reg, Version: "v9.9.9", Started: time.Now()})
	defer api.Close(time.Second)
	srv := httptest.NewServer(api)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/monitor")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /monitor = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"a.test/2000", "b.test:2001", "v9.9.9", "68.5%", "Load threshold 95%", "</html>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, bad := range []string{"%!", `"><script>`} {
		if strings.Contains(page, bad) {
			i := strings.Index(page, bad)
			t.Errorf("the page has %q: a formatting or escaping fault: %s", bad, page[max(0, i-80):i+20])
		}
	}
}

func ptr[T any](v T) *T { return &v }
