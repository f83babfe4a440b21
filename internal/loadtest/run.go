// Package loadtest measures the coordinator against the limit of the
// machine: /session under wrk beside a constant Go handler (and nginx when
// installed), heartbeat intake from thousands of simulated agents, and
// thousands of WebSocket clients waiting for an availability flip.
package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options of a load-test run.
type Options struct {
	Servers    int           // the large farm (the small one has 4)
	Conns      int           // wrk connections
	Threads    int           // wrk threads
	Duration   time.Duration // each wrk run
	Rounds     int           // wrk runs per target, alternated; the median is kept
	WSClients  int           // WebSocket clients on / for the flip
	IntakeTime time.Duration // window of the intake CPU measurement
	PerConn    int           // simulated agents sharing one NATS connection
	IntakeOnly bool          // stop after the intake measurement
	Script     string        // a wrk Lua script for the rounds ("" none)
	Out        io.Writer
}

// Main dispatches the helper roles of the loadtest binary; ok is false when
// args name none.
func Main(args []string) (code int, ok bool) {
	if len(args) == 4 && args[0] == "-role-agents" {
		n, _ := strconv.Atoi(args[2])
		perConn, _ := strconv.Atoi(args[3])
		return agentsMain(args[1], n, perConn), true
	}
	if len(args) == 3 && args[0] == "-role-natsfloor" {
		port, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		return floorMain(port, n), true
	}
	if len(args) == 2 && args[0] == "-role-baseline" {
		port, _ := strconv.Atoi(args[1])
		return baselineMain(port), true
	}
	return 0, false
}

// target is one HTTP server under test.
type target struct {
	name string
	url  string
	pid  int
}

type farm struct {
	coord  *exec.Cmd
	agents *exec.Cmd
	toAgts io.WriteCloser
	base   string
	nats   string // the coordinator's NATS URL
	pid    int

	natsPort int           // the coordinator's NATS port (startCoordinator's)
	exited   chan struct{} // closed once the coordinator has exited (startCoordinator's)
	waitErr  error         // its exit, once exited is closed
}

func (f *farm) stop() {
	if f.toAgts != nil {
		_ = f.toAgts.Close()
	}
	if c := f.agents; c != nil && c.Process != nil {
		_ = c.Process.Signal(syscall.SIGTERM)
		_ = c.Wait()
	}
	if c := f.coord; c != nil && c.Process != nil {
		_ = c.Process.Signal(syscall.SIGTERM)
		if f.exited != nil {
			<-f.exited // startCoordinator's goroutine waits for it
		} else {
			_ = c.Wait()
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startFarm runs a coordinator for n servers, rate limit off, and the
// helper process with n simulated agents; it returns once all are up.
func startFarm(ctx context.Context, dir, coordBin, self string, n, perConn int) (*farm, error) {
	f, err := startCoordinator(ctx, dir, coordBin, fmt.Sprintf("%d", n), farmConfig(dir, fmt.Sprintf("%d", n), n, 0, 0))
	if err != nil {
		return nil, err
	}
	if f.agents, f.toAgts, err = startAgents(self, f.natsPort, n, perConn); err != nil {
		f.stop()
		return nil, err
	}
	if err := f.waitUp(ctx, n); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

// farmConfig is a coordinator's configuration for n servers, rate limit
// off; port 0 and natsPort 0 let the coordinator choose.
func farmConfig(dir, name string, n, port, natsPort int) map[string]any {
	return map[string]any{
		"port": port, "ssl": false, "portRewrite": false, "debug": true,
		"simulationServers": ServerNames(n), "logDir": filepath.Join(dir, "log-"+name),
		"nats": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", natsPort)},
		"http": map[string]any{"sessionRate": 0, "maxWebSocketClients": 50000,
			"maxMonitorClients": 10000, "maxMonitorClientsPerAddress": 10000}, // the load test's clients share one address
	}
}

// startCoordinator writes cfg and runs a coordinator on it until /readyz
// answers. Its HTTP and NATS ports are what it bound (-listen-file): cfg
// gives port 0 for those it should choose, since a port picked here and
// closed may be taken by any connection on the machine before the
// coordinator binds it. A coordinator that exits first is reported at once,
// with its log's last lines.
func startCoordinator(ctx context.Context, dir, coordBin, name string, cfg map[string]any) (*farm, error) {
	data, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "session-"+name+".json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "coordinator-"+name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	lf := filepath.Join(dir, "listening-"+name+".json")
	f := &farm{exited: make(chan struct{})}
	f.coord = exec.Command(coordBin, "-listen-file", lf, path)
	f.coord.Stdout, f.coord.Stderr = logf, logf
	if err := f.coord.Start(); err != nil {
		return nil, err
	}
	f.pid = f.coord.Process.Pid
	go func() { f.waitErr = f.coord.Wait(); close(f.exited) }()
	var bound struct {
		HTTPPort int    `json:"httpPort"`
		NATSURL  string `json:"natsURL"`
		NATSPort int    `json:"natsPort"`
	}
	err = waitFor(ctx, 60*time.Second, func() error {
		select {
		case <-f.exited:
			return errExited
		default:
		}
		if f.base == "" {
			data, err := os.ReadFile(lf)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(data, &bound); err != nil {
				return err
			}
			f.base, f.nats, f.natsPort = fmt.Sprintf("http://127.0.0.1:%d", bound.HTTPPort), bound.NATSURL, bound.NATSPort
		}
		resp, err := http.Get(f.base + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	if errors.Is(err, errExited) {
		return nil, fmt.Errorf("coordinator %s exited before serving (%v): %s(log in %s)", name, f.waitErr, logTail(logf.Name(), 10), logf.Name())
	}
	if err != nil {
		f.stop()
		return nil, fmt.Errorf("coordinator %s: %w (log in %s)", name, err, logf.Name())
	}
	return f, nil
}

// errExited: the coordinator's process ended.
var errExited = errors.New("the coordinator exited")

// logTail is the last n lines of the file at path, each followed by a newline.
func logTail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return strings.Join(lines, "\n") + "\n"
}

// waitUp waits until the coordinator has n servers up.
func (f *farm) waitUp(ctx context.Context, n int) error {
	return waitFor(ctx, 30*time.Second, func() error {
		up, err := f.upCount()
		if err == nil && up < n {
			err = fmt.Errorf("%d of %d servers up", up, n)
		}
		return err
	})
}

// startAgents runs the helper process: n simulated agents publishing to
// the NATS server on natsPort. It returns once all their connections are
// open (10,000 of them take a while). Closing stdin stops it.
func startAgents(self string, natsPort, n, perConn int) (*exec.Cmd, io.WriteCloser, error) {
	cmd := exec.Command(self, "-role-agents", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), strconv.Itoa(n), strconv.Itoa(perConn))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("helper said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err = <-ready:
	case <-time.After(2 * time.Minute):
		err = fmt.Errorf("%d connections not open after 2 minutes", (n+perConn-1)/perConn)
	}
	if err != nil {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, nil, fmt.Errorf("simulated agents: %w", err)
	}
	return cmd, stdin, nil
}

// startFloor runs the intake's baseline: a bare embedded NATS server with a
// subscriber that does nothing (floorMain), fed the same heartbeats.
func startFloor(ctx context.Context, self string, n, perConn int) (*farm, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	f := &farm{}
	f.coord = exec.Command(self, "-role-natsfloor", strconv.Itoa(port), strconv.Itoa(n))
	f.coord.Stderr = os.Stderr
	if err := f.coord.Start(); err != nil {
		return nil, err
	}
	f.pid = f.coord.Process.Pid
	if err := waitFor(ctx, 10*time.Second, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		f.stop()
		return nil, fmt.Errorf("NATS floor: %w", err)
	}
	if f.agents, f.toAgts, err = startAgents(self, port, n, perConn); err != nil {
		f.stop()
		return nil, err
	}
	return f, nil
}

func (f *farm) upCount() (int, error) {
	resp, err := http.Get(f.base + "/api/servers")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var doc struct {
		Servers []struct {
			State string `json:"state"`
		} `json:"servers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return 0, err
	}
	up := 0
	for _, s := range doc.Servers {
		if s.State == "up" {
			up++
		}
	}
	return up, nil
}

// waitFor retries check every 50 ms until it succeeds or within passes.
func waitFor(ctx context.Context, within time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var err error
	for {
		if err = check(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v: %w", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// prepare checks for wrk, raises the file limit, and builds the coordinator
// into a temporary folder (the caller removes dir).
func prepare() (self, dir, coordBin string, err error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return "", "", "", fmt.Errorf("wrk is not installed (apt-get install wrk; scripts/loadtest.sh does it)")
	}
	raiseFileLimit()
	if self, err = os.Executable(); err != nil {
		return "", "", "", err
	}
	if dir, err = os.MkdirTemp("", "simgate-loadtest-"); err != nil {
		return "", "", "", err
	}
	coordBin = filepath.Join(dir, "coordinator")
	if out, err := exec.Command("go", "build", "-o", coordBin, "./cmd/coordinator").CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", "", fmt.Errorf("building the coordinator (run from the repository root): %v\n%s", err, out)
	}
	return self, dir, coordBin, nil
}

// Run performs the whole measurement and prints the report.
func Run(ctx context.Context, o Options) error {
	self, dir, coordBin, err := prepare()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w := o.Out
	fmt.Fprintf(w, "simgate load test: wrk -t%d -c%d, %v per run, %d rounds alternated, median kept\n",
		o.Threads, o.Conns, o.Duration, o.Rounds)

	small, err := startFarm(ctx, dir, coordBin, self, 4, o.PerConn)
	if err != nil {
		return err
	}
	defer small.stop()
	rssSmall, _ := rss(small.pid)
	big, err := startFarm(ctx, dir, coordBin, self, o.Servers, o.PerConn)
	if err != nil {
		return err
	}
	defer big.stop()

	// Heartbeat intake: the large coordinator's own CPU time with no HTTP
	// load, in the steady state (its start-up transitions done), measured
	// over the same window as the NATS floor fed the same heartbeats.
	fl, err := startFloor(ctx, self, o.Servers, o.PerConn)
	if err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // both in the steady state
	shares, err := cpuShares([]int{big.pid, fl.pid, big.agents.Process.Pid}, o.IntakeTime)
	fl.stop()
	if err != nil {
		return err
	}
	intake, floorCPU, agentsCPU := shares[0], shares[1], shares[2]
	rssBig, _ := rss(big.pid)
	if o.IntakeOnly {
		printIntake(w, o, intake, floorCPU, agentsCPU)
		return nil
	}

	targets, stopBaselines, err := baselineTargets(w, self, dir, small, big, o.Servers)
	defer stopBaselines()
	if err != nil {
		return err
	}
	if err := waitTargets(ctx, targets); err != nil {
		return err
	}
	results, err := rounds(ctx, o, targets)
	if err != nil {
		return err
	}
	// The ratio to the baseline is taken round by round (the rounds
	// alternate targets, so each pair ran seconds apart), then the median
	// of those: steadier than a ratio of medians on a noisy machine.
	ratios := make([]float64, len(targets))
	for i, rs := range results {
		ratios[i] = pairedRatio(rs, results[0])
	}
	med := make([]Result, len(targets))
	fmt.Fprintf(w, "\n%-34s %12s %9s %9s %8s\n", "target", "requests/s", "p50", "p99", "ratio")
	for i, rs := range results {
		med[i] = median(rs)
		fmt.Fprintf(w, "%-34s %12.0f %9s %9s %7.2fx", med[i].Target, med[i].Throughput, med[i].P50, med[i].P99, ratios[i])
		if med[i].Errors != "" {
			fmt.Fprintf(w, "  (%s)", med[i].Errors)
		}
		fmt.Fprintln(w)
	}

	flip, wsRSS, err := wsFlip(ctx, small, o.WSClients)
	if err != nil {
		return err
	}
	smallNow, _ := rss(small.pid)
	perKServers := float64(rssBig-rssSmall) / float64(o.Servers-4) * 1000
	printIntake(w, o, intake, floorCPU, agentsCPU)
	fmt.Fprintf(w, "memory: %.1f MiB with 4 servers, %.1f MiB with %d: %.0f KiB per 1,000 servers\n",
		mib(rssSmall), mib(rssBig), o.Servers, perKServers/1024)
	fmt.Fprintf(w, "WebSocket: %d clients on / received the flip to 0 within %v (median %v); %.0f KiB per 1,000 clients (RSS %.1f → %.1f MiB)\n",
		o.WSClients, flip.max.Round(time.Millisecond), flip.median.Round(time.Millisecond),
		float64(wsRSS)/float64(o.WSClients)*1000/1024, mib(smallNow-wsRSS), mib(smallNow))

	fmt.Fprintln(w, "\ngoals:")
	goal := func(ok bool, format string, args ...any) {
		mark := "PASS"
		if !ok {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s  %s\n", mark, fmt.Sprintf(format, args...))
	}
	goal(ratios[1] >= 0.9, "/session ≥ 0.9 × the Go constant handler: %.2f× (per round: %s)", ratios[1], roundRatios(results[1], results[0]))
	goal(med[1].P99 <= 2*time.Millisecond, "/session p99 ≤ 2 ms at %d connections: %v", o.Conns, med[1].P99)
	goal(med[2].Throughput >= 0.8*med[1].Throughput, "%d servers ≥ 0.8 × the 4-server throughput: %.2f×", o.Servers, med[2].Throughput/med[1].Throughput)
	goal(intake < 0.10, "heartbeat intake < 10%% of one core: %.1f%% (the NATS floor alone: %.1f%%)", intake*100, floorCPU*100)
	goal(flip.max <= time.Second && flip.missed == 0, "%d WebSocket clients get the flip within 1 s: %v, %d missed", o.WSClients, flip.max.Round(time.Millisecond), flip.missed)
	return nil
}

// baselineTargets starts the constant handlers (Go's, and nginx where
// installed) and lists them with the two farms' /session; stop ends them.
func baselineTargets(w io.Writer, self, dir string, small, big *farm, servers int) (targets []target, stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	basePort, err := freePort()
	if err != nil {
		return nil, stop, err
	}
	baseline := exec.Command(self, "-role-baseline", strconv.Itoa(basePort))
	baseline.Stderr = os.Stderr
	if err := baseline.Start(); err != nil {
		return nil, stop, err
	}
	stops = append(stops, func() { _ = baseline.Process.Kill(); _ = baseline.Wait() })
	targets = []target{
		{name: "Go net/http constant", url: fmt.Sprintf("http://127.0.0.1:%d/", basePort), pid: baseline.Process.Pid},
		{name: "simgate /session, 4 servers", url: small.base + "/session", pid: small.pid},
		{name: fmt.Sprintf("simgate /session, %d servers", servers), url: big.base + "/session", pid: big.pid},
	}
	nginxPort, _ := freePort()
	if ng, err := startNginx(dir, nginxPort); err != nil {
		fmt.Fprintf(w, "nginx: not started: %v\n", err)
	} else if ng != nil {
		stops = append(stops, func() { _ = ng.Process.Kill(); _ = ng.Wait() })
		targets = append(targets, target{name: "nginx constant", url: fmt.Sprintf("http://127.0.0.1:%d/", nginxPort), pid: ng.Process.Pid})
	} else {
		fmt.Fprintln(w, "nginx: not installed, left out")
	}
	return targets, stop, nil
}

// waitTargets waits until every target answers.
func waitTargets(ctx context.Context, targets []target) error {
	for _, t := range targets {
		if err := waitFor(ctx, 10*time.Second, func() error {
			resp, err := http.Get(t.url)
			if err == nil {
				resp.Body.Close()
			}
			return err
		}); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return nil
}

// rounds warms every target, then runs wrk on each in turn, o.Rounds times.
func rounds(ctx context.Context, o Options, targets []target) ([][]Result, error) {
	wrk := Wrk{Threads: o.Threads, Conns: o.Conns, Duration: o.Duration, Script: o.Script}
	warm := Wrk{Threads: o.Threads, Conns: o.Conns, Duration: time.Second, Script: o.Script}
	results := make([][]Result, len(targets))
	for _, t := range targets {
		if _, err := warm.Run(ctx, t.name, t.url); err != nil {
			return nil, err
		}
	}
	for range o.Rounds {
		for i, t := range targets {
			r, err := wrk.Run(ctx, t.name, t.url)
			if err != nil {
				return nil, err
			}
			results[i] = append(results[i], r)
		}
	}
	return results, nil
}

func printIntake(w io.Writer, o Options, intake, floorCPU, agentsCPU float64) {
	fmt.Fprintf(w, "\nheartbeat intake, %d servers every 1 s on %d connections: %.1f%% of one core (coordinator's own CPU time over %v; the helper publishing them: %.0f%%)\n",
		o.Servers, (o.Servers+o.PerConn-1)/o.PerConn, intake*100, o.IntakeTime, agentsCPU*100)
	fmt.Fprintf(w, "NATS floor, the same heartbeats into the bare embedded server and a subscriber that does nothing: %.1f%%; simgate's own work on them: %.1f%% (%.2fx the floor)\n",
		floorCPU*100, (intake-floorCPU)*100, intake/floorCPU)
}

// pairedRatio is the median over rounds of rs[i] / base[i] in throughput.
func pairedRatio(rs, base []Result) float64 {
	var q []float64
	for i := range min(len(rs), len(base)) {
		if base[i].Throughput > 0 {
			q = append(q, rs[i].Throughput/base[i].Throughput)
		}
	}
	if len(q) == 0 {
		return 0
	}
	slices.Sort(q)
	if len(q)%2 == 0 {
		return (q[len(q)/2-1] + q[len(q)/2]) / 2
	}
	return q[len(q)/2]
}

// roundRatios lists each round's ratio, for the report.
func roundRatios(rs, base []Result) string {
	var parts []string
	for i := range min(len(rs), len(base)) {
		if base[i].Throughput > 0 {
			parts = append(parts, fmt.Sprintf("%.2f", rs[i].Throughput/base[i].Throughput))
		}
	}
	return strings.Join(parts, " ")
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
