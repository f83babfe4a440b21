package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// MonitorCase is one /monitor load: clients live monitor pages on a farm of
// servers.
type MonitorCase struct{ Servers, Clients int }

// RunMonitor measures what live monitor pages cost the farm: /session's
// throughput and p99 with no page open, then with the pages connected and
// reading every update, in the same run; and the "down" transitions of
// healthy agents meanwhile (false downs: each would be a mail).
func RunMonitor(ctx context.Context, o Options, cases []MonitorCase) error {
	self, dir, coordBin, err := prepare()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w := o.Out
	wrk := Wrk{Threads: o.Threads, Conns: o.Conns, Duration: o.Duration}
	fmt.Fprintf(w, "simgate /monitor load: wrk -t%d -c%d on /session, %v per run, idle then with the pages\n\n", o.Threads, o.Conns, o.Duration)
	fmt.Fprintf(w, "%-22s %12s %9s %12s %9s %7s %12s\n", "farm, live pages", "idle req/s", "idle p99", "pages req/s", "p99", "ratio", "false downs")
	for _, c := range cases {
		f, err := startFarm(ctx, dir, coordBin, self, c.Servers, o.PerConn)
		if err != nil {
			return err
		}
		idle, loaded, downs, err := monitorCase(ctx, f, wrk, c.Clients)
		f.stop()
		if err != nil {
			return err
		}
		ratio := loaded.Throughput / idle.Throughput
		fmt.Fprintf(w, "%-22s %12.0f %9s %12.0f %9s %6.2fx %12d\n", fmt.Sprintf("%d servers, %d pages", c.Servers, c.Clients),
			idle.Throughput, idle.P99, loaded.Throughput, loaded.P99, ratio, downs)
		mark := "PASS"
		if ratio < 0.5 || downs > 0 {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s  /session ≥ 0.5 × idle with the pages (%.2f×), no false down (%d)\n", mark, ratio, downs)
	}
	return nil
}

func monitorCase(ctx context.Context, f *farm, wrk Wrk, clients int) (idle, loaded Result, downs int, err error) {
	if _, err = wrk.Run(ctx, "warm", f.base+"/session"); err != nil {
		return
	}
	if idle, err = wrk.Run(ctx, "idle", f.base+"/session"); err != nil {
		return
	}
	before, err := f.downs()
	if err != nil {
		return
	}
	url := strings.Replace(f.base, "http://", "ws://", 1) + "/monitor"
	pages := make([]*websocket.Conn, 0, clients)
	defer closeAll(pages)
	var wg sync.WaitGroup
	defer wg.Wait()
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, EnableCompression: true} // as browsers do
	for range clients {
		c, _, derr := dialer.DialContext(ctx, url, nil)
		if derr != nil {
			err = fmt.Errorf("page %d of %d: %w", len(pages)+1, clients, derr)
			return
		}
		pages = append(pages, c)
		wg.Add(1)
		go func() {
			// A page takes every update off the wire, as a browser does;
			// it does not inflate it: a browser does that on its own
			// machine, here it would be the load test's CPU, not the
			// coordinator's, that the figure measured.
			defer wg.Done()
			for {
				if _, _, err := c.NextReader(); err != nil {
					return
				}
			}
		}()
	}
	if loaded, err = wrk.Run(ctx, "pages", f.base+"/session"); err != nil {
		return
	}
	after, err := f.downs()
	downs = after - before
	closeAll(pages)
	return
}

// downs is the coordinator's count of transitions to down.
func (f *farm) downs() (int, error) {
	resp, err := http.Get(f.base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `simgate_state_changes_total{state="down"} `); ok {
			n, err := strconv.ParseFloat(v, 64)
			return int(n), err
		}
	}
	return 0, sc.Err()
}
