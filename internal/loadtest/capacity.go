package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/capacity"
	"github.com/simgate/simgate/internal/schema"
)

// DemandOptions is a capacity run: visitors arriving at random (Poisson)
// at Rate a second for Duration, each opening the session it is handed
// for an exponential time of mean Length, on servers whose simulated
// agents report a load of Base + PerSession × their sessions every
// Interval. The same Seed gives the same arrivals and lengths.
type DemandOptions struct {
	URL         string   // the coordinator, http://host:port
	NATS        string   // where the agents publish
	Servers     []string // the servers' entries (as configured)
	Rate        float64
	Length      time.Duration
	Duration    time.Duration
	Seed        uint64
	Base        float64
	PerSession  float64
	MaxSessions int
	Interval    time.Duration
}

// DemandResult is what the visitors got.
type DemandResult struct {
	Visitors, Placed, Refused, Other int
}

func (r DemandResult) String() string {
	return fmt.Sprintf("%d visitors: %d placed, %d refused, %d other answers", r.Visitors, r.Placed, r.Refused, r.Other)
}

// farmSim is the simulated servers: sessions running until their end.
type farmSim struct {
	mu   sync.Mutex
	ends map[string][]time.Time
}

func (f *farmSim) start(server string, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ends[server] = append(f.ends[server], until)
}

// running is how many sessions of server run at now (ended ones dropped).
func (f *farmSim) running(server string, now time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.ends[server][:0]
	for _, e := range f.ends[server] {
		if e.After(now) {
			kept = append(kept, e)
		}
	}
	f.ends[server] = kept
	return len(kept)
}

// Agents runs the simulated agents of o.Servers until ctx ends: each
// heartbeats every o.Interval, on its own phase, with its sessions.
func (f *farmSim) agents(ctx context.Context, nc *nats.Conn, o DemandOptions) {
	subj := schema.Subjects{Prefix: schema.DefaultPrefix}
	var wg sync.WaitGroup
	for i, s := range o.Servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select { // its phase
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i) * o.Interval / time.Duration(len(o.Servers))):
			}
			t := time.NewTicker(o.Interval)
			defer t.Stop()
			for {
				n := f.running(s, time.Now())
				load := min(o.Base+o.PerSession*float64(n), 100)
				hb := schema.Heartbeat{V: 1, Server: s, Status: schema.StatusUp, Load: load, Interval: o.Interval.Seconds(),
					Sessions: &n, Time: time.Now().UTC().Format(time.RFC3339Nano)}
				if o.MaxSessions > 0 {
					hb.MaxSessions = ptrInt(o.MaxSessions)
				}
				if data, err := hb.Encode(); err == nil {
					_ = nc.Publish(subj.Load(s), data)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
}

// StartAgents runs o's simulated agents until the returned stop is
// called; the farm they report is what RunDemand's visitors open
// sessions on.
func StartAgents(o DemandOptions) (f *farmSim, stop func(), err error) {
	nc, err := nats.Connect(o.NATS, nats.Name("simgate-loadtest-capacity-agents"))
	if err != nil {
		return nil, nil, err
	}
	f = &farmSim{ends: map[string][]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.agents(ctx, nc, o); close(done) }()
	return f, func() { cancel(); <-done; nc.Close() }, nil
}

// RunDemand sends o's visitors to o.URL's /session, each from an address
// of its own (X-Forwarded-For: the coordinator must trust 127.0.0.1 as a
// proxy), and opens each session handed out on f.
func RunDemand(ctx context.Context, f *farmSim, o DemandOptions) (DemandResult, error) {
	rng := rand.New(rand.NewPCG(o.Seed, 0xca9))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var (
		mu  sync.Mutex
		res DemandResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	at := time.Duration(0)
	for i := 0; ; i++ {
		at += time.Duration(rng.ExpFloat64() / o.Rate * float64(time.Second))
		if at >= o.Duration {
			break
		}
		length := time.Duration(rng.ExpFloat64() * float64(o.Length))
		select {
		case <-ctx.Done():
			wg.Wait()
			return res, ctx.Err()
		case <-time.After(time.Until(start.Add(at))):
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL+"/session", nil)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
			resp, err := client.Do(req)
			var body string
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
			}
			mu.Lock()
			defer mu.Unlock()
			res.Visitors++
			switch {
			case strings.HasPrefix(body, "ws://") || strings.HasPrefix(body, "wss://"):
				_, server, _ := strings.Cut(body, "://")
				f.start(server, time.Now().Add(length))
				res.Placed++
			case strings.HasPrefix(body, "Error:"):
				res.Refused++
			default:
				res.Other++
			}
		}()
	}
	wg.Wait()
	return res, nil
}

// Validation is the what-if's check (README, Capacity): the same demand
// run against N servers, then N+K; the what-if made from the first run's
// history predicts the second's refusals.
type Validation struct {
	CoordBin string // the coordinator binary
	Dir      string // where configurations and logs go
	N, K     int
	Demand   DemandOptions // its URL, NATS and Servers are set per run
}

// ValidationReport is both runs and the prediction.
type ValidationReport struct {
	Measured  [2]DemandResult // with N, then N+K servers
	Predicted capacity.Row    // the what-if's row for N+K, from the first run
	Self      capacity.Row    // its row for N (k = 0): the model against its own run
	WhatIf    capacity.WhatIfDoc
}

// Error is the prediction's relative error on the refusals with N+K
// servers.
func (r ValidationReport) Error() float64 {
	m := float64(r.Measured[1].Refused)
	return (float64(r.Predicted.Refused) - m) / max(m, 1)
}

// Validate runs v: two coordinators in turn, each with its own store.
func Validate(ctx context.Context, v Validation) (ValidationReport, error) {
	var rep ValidationReport
	for run, n := range []int{v.N, v.N + v.K} {
		res, doc, err := demandRun(ctx, v, fmt.Sprintf("capacity-%d", run), n, run == 0)
		if err != nil {
			return rep, err
		}
		rep.Measured[run] = res
		if run == 0 {
			rep.WhatIf = doc
			for _, row := range doc.Rows {
				switch row.K {
				case 0:
					rep.Self = row
				case v.K:
					rep.Predicted = row
				}
			}
		}
	}
	return rep, nil
}

// distinctPorts is n free loopback ports, all different: each is held
// until all are chosen (a port closed and asked for again may come back,
// and two servers of one name are one).
func distinctPorts(n int) ([]int, error) {
	out := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// demandRun runs the demand against n servers; with whatIf, it then
// reads the coordinator's what-if.
func demandRun(ctx context.Context, v Validation, name string, n int, whatIf bool) (DemandResult, capacity.WhatIfDoc, error) {
	var doc capacity.WhatIfDoc
	ports, err := distinctPorts(n)
	if err != nil {
		return DemandResult{}, doc, err
	}
	servers := make([]string, n) // nothing listens there: the agents speak for them
	for i := range servers {
		servers[i] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	dir := filepath.Join(v.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return DemandResult{}, doc, err
	}
	cfg := map[string]any{
		"port": 0, "ssl": false, "portRewrite": false, "debug": true, "logDir": dir,
		"simulationServers": servers,
		"nats":              map[string]any{"listen": "127.0.0.1:0"},
		"queue":             map[string]any{"enabled": false},
		"http":              map[string]any{"sessionRate": 0, "trustedProxies": []string{"127.0.0.1"}},
	}
	f, err := startCoordinator(ctx, dir, v.CoordBin, name, cfg)
	if err != nil {
		return DemandResult{}, doc, err
	}
	defer f.stop()
	o := v.Demand
	o.URL, o.NATS, o.Servers = f.base, f.nats, servers
	sim, stop, err := StartAgents(o)
	if err != nil {
		return DemandResult{}, doc, err
	}
	defer stop()
	if err := f.waitUp(ctx, n); err != nil {
		return DemandResult{}, doc, err
	}
	res, err := RunDemand(ctx, sim, o)
	if err != nil || !whatIf {
		return res, doc, err
	}
	err = waitFor(ctx, 2*time.Minute, func() error {
		resp, err := http.Get(f.base + "/api/capacity")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var d capacity.Doc
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			return err
		}
		if d.WhatIf == nil || d.Computing {
			return fmt.Errorf("the what-if is not made yet")
		}
		if d.WhatIf.Error != "" {
			return fmt.Errorf("what-if: %s", d.WhatIf.Error)
		}
		doc = *d.WhatIf
		return nil
	})
	return res, doc, err
}

// DefaultDemand is the README's capacity check: 25 visitors a second for
// two minutes (3,000 visitors: the refusals' own noise, run to run, is
// about 3 %), sessions of 2 s in the mean, on servers full at 5 sessions
// (load 10 + 17 per session, threshold 95) heartbeating every 250 ms.
func DefaultDemand() DemandOptions {
	return DemandOptions{Rate: 25, Length: 2 * time.Second, Duration: 2 * time.Minute, Seed: 1,
		Base: 10, PerSession: 17, MaxSessions: 5, Interval: 250 * time.Millisecond}
}

// RunCapacity is `loadtest -capacity N+K`: Validate with DefaultDemand,
// printed.
func RunCapacity(ctx context.Context, n, k int, out io.Writer) error {
	_, dir, coordBin, err := prepare()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rep, err := Validate(ctx, Validation{CoordBin: coordBin, Dir: dir, N: n, K: k, Demand: DefaultDemand()})
	if err != nil {
		return err
	}
	PrintValidation(out, n, k, rep)
	return nil
}

// PrintValidation writes rep as the README shows it.
func PrintValidation(out io.Writer, n, k int, rep ValidationReport) {
	w := rep.WhatIf
	fmt.Fprintf(out, "model from the run with %d servers: %d servers, %d seats each, sessions of %.2f s, heartbeats every %.2f s, %d visitors\n",
		n, w.Model.Servers, w.Seats, w.MeanLength, w.Interval, w.Visitors)
	fmt.Fprintf(out, "measured with %d servers: %v\n", n, rep.Measured[0])
	fmt.Fprintf(out, "what-if  with %d servers: %d turned away (k=0)\n", n, rep.Self.Refused)
	fmt.Fprintf(out, "what-if  with %d servers: %d turned away (k=%+d)\n", n+k, rep.Predicted.Refused, k)
	fmt.Fprintf(out, "measured with %d servers: %v\n", n+k, rep.Measured[1])
	fmt.Fprintf(out, "prediction error on the refusals with %d servers: %+.1f %%\n", n+k, 100*rep.Error())
}
