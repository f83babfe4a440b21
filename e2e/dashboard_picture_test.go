package e2e

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/simgate/simgate/internal/testutil"
)

// TestDashboardPicture makes the README's picture of the Grafana
// dashboard (docs/dashboard.png) from real figures: a coordinator with
// three servers and a minute and a half of visitors (the farm fills up,
// visitors wait, some are turned away), scraped every second by a real
// Prometheus; each panel of deploy/grafana/simgate.json is drawn from its
// own queries, asked of that Prometheus, at its place on Grafana's grid.
// Grafana itself is not on this machine: the layout, titles, queries and
// legends are the dashboard's, the drawing is this test's. It runs when
// SIMGATE_SCREENSHOTS names the folder the picture goes to:
//
//	SIMGATE_SCREENSHOTS=$PWD/docs go test -run TestDashboardPicture ./e2e/
func TestDashboardPicture(t *testing.T) {
	dir := os.Getenv("SIMGATE_SCREENSHOTS")
	if dir == "" {
		t.Skip("SIMGATE_SCREENSHOTS is not set: the picture is made on demand")
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed")
	}
	servers := []string{"127.0.0.1/3421", "127.0.0.1/3422", "127.0.0.1/3423"}
	f := startFarm(t, map[string]any{"simulationServers": servers, "queue": map[string]any{"max": 60, "maxWait": 8}})
	p := f.publisher(t, "dashboard")
	for _, s := range servers {
		p.beatRich(s, map[string]any{"load": 20, "interval": 1, "sessions": 0})
	}

	// Prometheus, scraping the coordinator every second, on a port
	// outside the ephemeral range (one from port 0, closed again, may be
	// any outgoing connection's before Prometheus binds it).
	promAddr := "127.0.0.1:" + strconv.Itoa(testutil.FixedPorts(t, 1)[0])
	pdir := t.TempDir()
	target := strings.TrimPrefix(f.base, "http://")
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: simgate\n    static_configs: [{targets: [%q]}]\n", target)
	if err := os.WriteFile(filepath.Join(pdir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+filepath.Join(pdir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(pdir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &testutil.Buffer{}, &testutil.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testutil.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		resp, err := http.Get("http://" + promAddr + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("prometheus: %s", resp.Status)
		}
		return nil
	})

	// Ninety seconds of a day in the farm's life: visitors, a rush that
	// fills it, a line, then calm.
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for i := 0; time.Since(start) < 90*time.Second; i++ {
		<-tick.C
		el := time.Since(start).Seconds()
		rush := el > 30 && el < 60
		if i%4 == 0 {
			for k, s := range servers {
				load := 25 + 20*math.Sin(el/10+float64(k)) + float64(k)*5
				if rush {
					load = 97
				}
				p.beatRich(s, map[string]any{"load": load, "cpu": load, "interval": 1, "sessions": int(load / 20)})
			}
		}
		visitors := 1
		if rush {
			visitors = 3
		}
		for v := range visitors {
			go func() { _, _, _ = getAs(f.base+"/session", fmt.Sprintf("198.51.100.%d", (i*3+v)%250+1)) }()
		}
	}
	end := time.Now()
	sc := f.scrape(t)
	for _, r := range []string{"schema", "subject", "unknown-server", "size", "closed-connection", "internal", "permission"} {
		if v := sc.value("simgate_heartbeats_dropped_total", "reason", r); v > 0 {
			t.Logf("heartbeats dropped as %s: %v", r, v)
		}
	}

	// Each panel's queries, over the run.
	data, err := os.ReadFile("../deploy/grafana/simgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string  `json:"title"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	page := renderDashboard(t, dash.Title, dash.Panels, "http://"+promAddr, start, end)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	}))
	defer srv.Close()
	ctx := browser(t, 60*time.Second)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1240, 800), chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	shoot(t, ctx, filepath.Join(dir, "dashboard.png"))
}

type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		Expr   string `json:"expr"`
		Legend string `json:"legendFormat"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

type series struct {
	name   string
	points [][2]float64 // unix seconds, value
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_]+)\s*\}\}`)

// query asks Prometheus for expr over [start, end], Grafana's variables
// replaced as Grafana would for one coordinator.
func query(t *testing.T, prom, expr, legend string, start, end time.Time) []series {
	t.Helper()
	expr = strings.NewReplacer("$instance", ".*", "$__rate_interval", "15s", "${instance}", ".*").Replace(expr)
	q := url.Values{"query": {expr}, "start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(end.Unix())}, "step": {"2"}}
	resp, err := http.Get(prom + "/api/v1/query_range?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", expr, err, r.Error)
	}
	var out []series
	for _, res := range r.Data.Result {
		name := legendLabel.ReplaceAllStringFunc(legend, func(m string) string {
			return res.Metric[legendLabel.FindStringSubmatch(m)[1]]
		})
		if name == "" {
			name = fmt.Sprint(res.Metric)
		}
		s := series{name: name}
		for _, v := range res.Values {
			var x float64
			fmt.Sscan(fmt.Sprint(v[1]), &x)
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				s.points = append(s.points, [2]float64{v[0].(float64), x})
			}
		}
		out = append(out, s)
	}
	return out
}

var palette = []string{"#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#ffb357",
	"#96d98d", "#fade2a", "#ca95e5", "#ff9830"}

// renderDashboard is the dashboard as a page: Grafana's 24-column grid,
// rows of 30 px, its dark theme.
func renderDashboard(t *testing.T, title string, panels []panel, prom string, start, end time.Time) string {
	const width, row = 1200.0, 30.0
	var b strings.Builder
	fmt.Fprintf(&b, `<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body{margin:0;background:#111217;font:13px/1.3 Inter,system-ui,sans-serif;color:#ccccdc}
h1{font-size:17px;font-weight:500;margin:0;padding:10px 20px;color:#d8d9da}
.grid{position:relative;margin:0 20px}
.p{position:absolute;background:#181b1f;border:1px solid #2a2d33;border-radius:2px;padding:6px 8px;box-sizing:border-box;overflow:hidden}
.p h2{font-size:13px;font-weight:500;margin:0 0 4px;color:#ccccdc}
.stat{display:flex;gap:18px;align-items:baseline;justify-content:center;height:70%%}
.stat b{font-size:30px;font-weight:500;color:#73bf69}.stat small{display:block;font-size:11px;color:#8e8e8e}
.lg{font-size:11px;color:#9fa7b3;position:absolute;bottom:4px;left:8px;right:8px;white-space:nowrap;overflow:hidden}
.lg i{display:inline-block;width:12px;height:3px;margin:0 4px 2px 10px;vertical-align:middle}
svg{display:block}</style></head><body><h1>%s <small style="color:#8e8e8e;font-size:12px">· last %d s · the dashboard's queries against a real Prometheus</small></h1><div class="grid">`,
		html.EscapeString(title), int(end.Sub(start).Seconds()))
	bottom := 0.0
	for _, p := range panels {
		x, y := float64(p.GridPos.X)/24*width, float64(p.GridPos.Y)*row
		w, h := float64(p.GridPos.W)/24*width-6, float64(p.GridPos.H)*row-6
		bottom = max(bottom, y+h)
		fmt.Fprintf(&b, `<div class="p" style="left:%.0fpx;top:%.0fpx;width:%.0fpx;height:%.0fpx"><h2>%s</h2>`, x, y, w, h, html.EscapeString(p.Title))
		var all []series
		for _, tg := range p.Targets {
			all = append(all, query(t, prom, tg.Expr, tg.Legend, start, end)...)
		}
		if p.Type == "stat" {
			b.WriteString(`<div class="stat">`)
			for _, s := range all {
				v := "–"
				if n := len(s.points); n > 0 {
					v = fmt.Sprintf("%.4g", s.points[n-1][1])
				}
				fmt.Fprintf(&b, `<div><b>%s</b><small>%s</small></div>`, v, html.EscapeString(s.name))
			}
			b.WriteString(`</div></div>`)
			continue
		}
		pw, ph := w-16, h-58
		top := 0.0
		for _, s := range all {
			for _, pt := range s.points {
				top = max(top, pt[1])
			}
		}
		if top == 0 {
			top = 1
		}
		fmt.Fprintf(&b, `<svg width="%.0f" height="%.0f">`, pw, ph+14)
		for g := 0; g <= 4; g++ {
			gy := ph - float64(g)/4*ph + 2
			fmt.Fprintf(&b, `<line x1="34" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#2a2d33"/><text x="0" y="%.1f" fill="#8e8e8e" font-size="10">%.3g</text>`,
				pw, gy, gy, gy+3, top*float64(g)/4)
		}
		span := end.Sub(start).Seconds()
		for i, s := range all {
			var pts []string
			for _, pt := range s.points {
				px := 34 + (pt[0]-float64(start.Unix()))/span*(pw-36)
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, ph-pt[1]/top*ph+2))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke-width="1.5" stroke="%s" points="%s"/>`, palette[i%len(palette)], strings.Join(pts, " "))
		}
		b.WriteString(`</svg><div class="lg">`)
		for i, s := range all {
			fmt.Fprintf(&b, `<i style="background:%s"></i>%s`, palette[i%len(palette)], html.EscapeString(s.name))
		}
		if u := p.FieldConfig.Defaults.Unit; u != "" {
			fmt.Fprintf(&b, ` <span style="float:right">%s</span>`, html.EscapeString(u))
		}
		b.WriteString(`</div></div>`)
	}
	fmt.Fprintf(&b, `</div><div style="height:%.0fpx"></div></body></html>`, bottom+20)
	return b.String()
}
