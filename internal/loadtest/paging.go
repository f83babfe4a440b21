package loadtest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// RunPaging measures what a monitor paging simgate.api.servers in a loop
// costs /session (issue 31: ~65 pages a second put the coordinator at 98 %
// CPU and halved /session): wrk on /session with nobody paging, then with
// pagers NATS clients each asking every page of the servers document as
// fast as it is answered, in the same run, on a farm of servers.
func RunPaging(ctx context.Context, o Options, servers, pagers int) error {
	self, dir, coordBin, err := prepare()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w := o.Out
	wrk := Wrk{Threads: o.Threads, Conns: o.Conns, Duration: o.Duration}
	f, err := startFarm(ctx, dir, coordBin, self, servers, o.PerConn)
	if err != nil {
		return err
	}
	defer f.stop()
	fmt.Fprintf(w, "simgate paging load: wrk -t%d -c%d on /session, %v per run, %d servers; then %d monitors paging simgate.api.servers in a loop\n\n",
		o.Threads, o.Conns, o.Duration, servers, pagers)
	if _, err := wrk.Run(ctx, "warm", f.base+"/session"); err != nil {
		return err
	}
	fmt.Fprintf(w, "%-8s %12s %9s %12s %9s %7s %14s\n", "round", "idle req/s", "idle p99", "paged req/s", "p99", "ratio", "pages/s")
	worst := 2.0
	for round := 1; round <= max(o.Rounds, 1); round++ {
		idle, err := wrk.Run(ctx, "idle", f.base+"/session")
		if err != nil {
			return err
		}
		pctx, stop := context.WithCancel(ctx)
		var pages atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, pagers)
		for range pagers {
			nc, err := nats.Connect(f.nats, nats.Name("paging-monitor"))
			if err != nil {
				stop()
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				for pctx.Err() == nil {
					n := 1
					for p := 1; p <= n && pctx.Err() == nil; p++ {
						m, err := nc.Request("simgate.api.servers", []byte(`{"page":`+strconv.Itoa(p)+`}`), 5*time.Second)
						if err != nil {
							if pctx.Err() == nil {
								errs <- err
							}
							return
						}
						pages.Add(1)
						if v := m.Header.Get("Simgate-Pages"); v != "" {
							n, _ = strconv.Atoi(v)
						}
					}
				}
			}()
		}
		begin := time.Now()
		paged, err := wrk.Run(ctx, "paged", f.base+"/session")
		rate := float64(pages.Load()) / time.Since(begin).Seconds()
		stop()
		wg.Wait()
		if err != nil {
			return err
		}
		select {
		case err := <-errs:
			return fmt.Errorf("a pager: %w", err)
		default:
		}
		ratio := paged.Throughput / idle.Throughput
		worst = min(worst, ratio)
		fmt.Fprintf(w, "%-8d %12.0f %9s %12.0f %9s %6.2fx %14.0f\n", round, idle.Throughput, idle.P99, paged.Throughput, paged.P99, ratio, rate)
	}
	mark := "PASS"
	if worst < 0.9 {
		mark = "FAIL"
	}
	fmt.Fprintf(w, "  %s  /session ≥ 0.9 × idle while monitors page (worst round %.2f×)\n", mark, worst)
	return nil
}
