package loadtest

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RunCluster measures a cluster of three coordinators against one
// coordinator alone, in the same run: /session throughput of one member
// (whose every placement is published to the two others), how long a
// booking takes to reach the other members, and the heartbeat intake's CPU
// on each member beside the lone coordinator's.
func RunCluster(ctx context.Context, o Options) error {
	self, dir, coordBin, err := prepare()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w := o.Out
	n := o.Servers
	fmt.Fprintf(w, "simgate cluster load test: %d servers heartbeating every 1 s; wrk -t%d -c%d on /session, %v per run, %d rounds alternated\n",
		n, o.Threads, o.Conns, o.Duration, o.Rounds)

	single, err := startFarm(ctx, dir, coordBin, self, n, o.PerConn)
	if err != nil {
		return err
	}
	defer single.stop()

	members, err := startMembers(ctx, dir, coordBin, n)
	defer func() {
		for _, m := range members {
			m.stop()
		}
	}()
	if err != nil {
		return err
	}
	// The simulated agents connect to the first member; the others get
	// their heartbeats over the routes.
	if members[0].agents, members[0].toAgts, err = startAgents(self, members[0].natsPort, n, o.PerConn); err != nil {
		return err
	}
	for _, m := range members {
		if err := m.waitUp(ctx, n); err != nil {
			return err
		}
	}

	time.Sleep(5 * time.Second) // the steady state, start-up transitions done
	pids := []int{single.pid}
	for _, m := range members {
		pids = append(pids, m.pid)
	}
	shares, err := cpuShares(pids, o.IntakeTime)
	if err != nil {
		return err
	}

	// /session on the second member (no agent connected to it) against
	// the lone coordinator, rounds alternated.
	targets := []target{
		{name: "one coordinator /session", url: single.base + "/session"},
		{name: "member of 3 /session", url: members[1].base + "/session"},
	}
	// Every request another visitor: each one books, and each booking goes
	// to the other members.
	script := filepath.Join(dir, "visitors.lua")
	if err := os.WriteFile(script, []byte(visitorsScript), 0o600); err != nil {
		return err
	}
	o.Script = script
	results, err := rounds(ctx, o, targets)
	if err != nil {
		return err
	}
	ratio := pairedRatio(results[1], results[0])
	fmt.Fprintf(w, "\n/session from a new visitor each time (every request books):\n%-28s %12s %9s %9s\n", "target", "requests/s", "p50", "p99")
	for _, rs := range results {
		m := median(rs)
		fmt.Fprintf(w, "%-28s %12.0f %9s %9s\n", m.Target, m.Throughput, m.P50, m.P99)
	}
	// Member 1's placements, as the two others applied them.
	applied, batches, p50, p99, err := propagation(members[0].base, members[2].base)
	if err != nil {
		return err
	}
	placed, _ := scrapeCounter(members[1].base, `simgate_session_requests_total{result="placed"}`)
	fmt.Fprintf(w, "\nbookings: member 1 placed %.0f sessions; the two others applied %.0f of its bookings, in %.0f batches; propagation (oldest of a batch) p50 %s, p99 %s (histogram bucket bounds)\n",
		placed, applied, batches, p50, p99)
	fmt.Fprintf(w, "heartbeat intake, %d servers every 1 s: one coordinator %.1f%% of a core; members %.1f%%, %.1f%%, %.1f%% (the first holds the agents' connections)\n",
		n, shares[0]*100, shares[1]*100, shares[2]*100, shares[3]*100)

	fmt.Fprintln(w, "\ngoals:")
	goal := func(ok bool, format string, args ...any) {
		mark := "PASS"
		if !ok {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s  %s\n", mark, fmt.Sprintf(format, args...))
	}
	goal(ratio >= 0.9, "a member's /session ≥ 0.9 × one coordinator's: %.2f× (per round: %s)", ratio, roundRatios(results[1], results[0]))
	p99d, _ := time.ParseDuration(strings.TrimPrefix(p99, "≤ "))
	goal(applied > 0 && p99d <= 10*time.Millisecond, "bookings reach the other members within 10 ms p99: %s", p99)
	return nil
}

// startMembers starts a cluster of three coordinators for n servers; it
// returns those started (to stop, even on an error). Each binds its own
// HTTP and NATS ports; the routes' ports are chosen here, since each
// member names the others'.
func startMembers(ctx context.Context, dir, coordBin string, n int) (members []*farm, err error) {
	ports, err := distinctPorts(3)
	if err != nil {
		return nil, err
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i, p := range ports {
		name := fmt.Sprintf("member%d", i)
		cfg := farmConfig(dir, name, n, 0, 0)
		cfg["nats"].(map[string]any)["cluster"] = map[string]any{"name": "loadtest",
			"listen": fmt.Sprintf("127.0.0.1:%d", p), "routes": routes}
		m, err := startCoordinator(ctx, dir, coordBin, name, cfg)
		if err != nil {
			return members, err
		}
		members = append(members, m)
	}
	return members, nil
}

// propagation is what the members at bases applied of the others'
// bookings, in how many batches, and the propagation's quantiles.
func propagation(bases ...string) (applied, batches float64, p50, p99 string, err error) {
	for _, base := range bases {
		h, err := scrapeHistogram(base, "simgate_booking_propagation_seconds")
		if err != nil {
			return 0, 0, "", "", err
		}
		n, err := scrapeCounter(base, "simgate_bookings_applied_total")
		if err != nil {
			return 0, 0, "", "", err
		}
		applied, batches = applied+n, batches+h.count
		p50, p99 = h.quantile(0.5), h.quantile(0.99)
	}
	return applied, batches, p50, p99, nil
}

// median is the run of median throughput.
func median(rs []Result) Result {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b Result) int { return cmp.Compare(a.Throughput, b.Throughput) })
	return sorted[len(sorted)/2]
}

// histogram is a Prometheus histogram as scraped: cumulative counts by bound.
type histogram struct {
	bounds []float64
	counts []float64
	count  float64
}

// quantile is the bound of the first bucket holding quantile q, "≤ 250µs".
func (h histogram) quantile(q float64) string {
	for i, c := range h.counts {
		if h.count > 0 && c >= q*h.count {
			return "≤ " + time.Duration(h.bounds[i]*float64(time.Second)).String()
		}
	}
	return "> " + time.Duration(h.bounds[len(h.bounds)-1]*float64(time.Second)).String()
}

func scrapeHistogram(base, name string) (histogram, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	var h histogram
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, name+`_bucket{le="`):
			rest := strings.TrimPrefix(line, name+`_bucket{le="`)
			le, val, _ := strings.Cut(rest, `"} `)
			if le == "+Inf" {
				continue
			}
			b, err1 := strconv.ParseFloat(le, 64)
			v, err2 := strconv.ParseFloat(val, 64)
			if err1 == nil && err2 == nil {
				h.bounds, h.counts = append(h.bounds, b), append(h.counts, v)
			}
		case strings.HasPrefix(line, name+"_count "):
			h.count, _ = strconv.ParseFloat(strings.TrimPrefix(line, name+"_count "), 64)
		}
	}
	if len(h.bounds) == 0 {
		return h, fmt.Errorf("%s/metrics has no %s", base, name)
	}
	return h, sc.Err()
}

// scrapeCounter reads one sample (name with its labels, as exposed) from /metrics.
func scrapeCounter(base, name string) (float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s/metrics has no %s", base, name)
}
