package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"
)

// RunLogins measures what passwords cost a farm (README, Security): 100
// agents, each with its own cost-11 bcrypt password, joining a fresh
// coordinator, against the same with plain passwords; then /session's
// throughput and p99, idle and under 20 wrong passwords a second (10 over
// NATS, 10 by HTTP Basic for the admin), from one address and from many,
// with the log lines a minute the floods cause.
func RunLogins(ctx context.Context, o Options) error {
	_, dir, coordBin, err := prepare()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w := o.Out
	const agents = 100
	names := ServerNames(agents)
	fmt.Fprintf(w, "simgate logins: %d agents with their own password; wrk -t%d -c%d on /session, %v per run\n\n", agents, o.Threads, o.Conns, o.Duration)
	hashes := make([]string, agents+1)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i := range hashes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			h, _ := bcrypt.GenerateFromPassword([]byte(fmt.Sprintf("secret-%d", i)), 11)
			hashes[i] = string(h)
		}()
	}
	wg.Wait()
	for _, hashed := range []bool{false, true} {
		users := []map[string]any{}
		for i := range agents {
			pw := fmt.Sprintf("secret-%d", i)
			if hashed {
				pw = hashes[i]
			}
			users = append(users, map[string]any{"user": fmt.Sprintf("agent%03d", i), "password": pw, "role": "agent", "servers": []string{names[i]}})
		}
		admin := fmt.Sprintf("secret-%d", agents)
		if hashed {
			admin = hashes[agents]
		}
		users = append(users, map[string]any{"user": "admin", "password": admin, "role": "admin"})
		name := fmt.Sprintf("logins-%v", hashed)
		cfg := farmConfig(dir, name, agents, 0, 0)
		cfg["nats"].(map[string]any)["users"] = users
		f, err := startCoordinator(ctx, dir, coordBin, name, cfg)
		if err != nil {
			return err
		}
		took, in := joinAll(ctx, f.nats, names)
		kind := "plain passwords"
		if hashed {
			kind = "bcrypt cost 11"
		}
		fmt.Fprintf(w, "%-16s %d of %d agents in after %v (fresh coordinator)\n", kind, in, agents, took.Round(10*time.Millisecond))
		if hashed {
			err = loginFloods(ctx, o, f, filepath.Join(dir, "coordinator-"+name+".log"), f.natsPort)
		}
		f.stop()
		if err != nil {
			return err
		}
	}
	return nil
}

// joinAll connects one agent per name, each retrying as a real agent does,
// and says how long until all were in.
func joinAll(ctx context.Context, url string, names []string) (time.Duration, int) {
	start := time.Now()
	var in atomic.Int64
	var wg sync.WaitGroup
	conns := make([]*nats.Conn, len(names))
	for i, s := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Since(start) < 75*time.Second {
				nc, err := nats.Connect(url, nats.Name(s), nats.UserInfo(fmt.Sprintf("agent%03d", i), fmt.Sprintf("secret-%d", i)),
					nats.Timeout(5*time.Second))
				if err == nil {
					conns[i] = nc
					in.Add(1)
					return
				}
				time.Sleep(250 * time.Millisecond) // an agent's reconnect wait
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for _, nc := range conns {
		if nc != nil {
			nc.Close()
		}
	}
	return took, int(in.Load())
}

// loginFloods runs wrk idle and under each flood, alternated o.Rounds
// times (medians: the machine is noisy), and counts the log lines.
func loginFloods(ctx context.Context, o Options, f *farm, logPath string, natsPort int) error {
	w := o.Out
	wrk := Wrk{Threads: o.Threads, Conns: o.Conns, Duration: o.Duration}
	if _, err := wrk.Run(ctx, "warm", f.base+"/session"); err != nil {
		return err
	}
	var idle, one, many []Result
	var perMin [2][]float64
	for range max(o.Rounds, 1) {
		r, err := wrk.Run(ctx, "idle", f.base+"/session")
		if err != nil {
			return err
		}
		idle = append(idle, r)
		for i, spread := range []bool{false, true} {
			before := lines(logPath)
			stop := make(chan struct{})
			var done sync.WaitGroup
			done.Add(1)
			go func() {
				defer done.Done()
				flood(natsPort, f.base, spread, stop)
			}()
			start := time.Now()
			r, err := wrk.Run(ctx, "flood", f.base+"/session")
			close(stop)
			done.Wait()
			if err != nil {
				return err
			}
			perMin[i] = append(perMin[i], float64(lines(logPath)-before)/time.Since(start).Minutes())
			if spread {
				many = append(many, r)
			} else {
				one = append(one, r)
			}
		}
	}
	base := median(idle)
	fmt.Fprintf(w, "\n%-34s %10s %9s %7s %14s\n", "20 wrong passwords a second", "req/s", "p99", "ratio", "log lines/min")
	fmt.Fprintf(w, "%-34s %10.0f %9s\n", "none (idle)", base.Throughput, base.P99)
	for i, c := range []struct {
		who string
		rs  []Result
	}{{"from one address", one}, {"from a new address each (HTTP)", many}} {
		m := median(c.rs)
		slices.Sort(perMin[i])
		fmt.Fprintf(w, "%-34s %10.0f %9s %6.2fx %14.0f\n", c.who, m.Throughput, m.P99, m.Throughput/base.Throughput, perMin[i][len(perMin[i])-1])
	}
	return nil
}

// flood tries 10 wrong NATS passwords and 10 wrong HTTP Basic passwords a
// second until stop, each in its own goroutine (a refused login waits).
func flood(natsPort int, base string, many bool, stop <-chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort), nats.UserInfo("agent000", fmt.Sprintf("guess-%d", i)),
					nats.Timeout(5*time.Second), nats.MaxReconnects(0))
				if err == nil {
					nc.Close()
				}
				return
			}
			req, _ := http.NewRequest(http.MethodGet, base+"/monitor?admin", nil)
			req.SetBasicAuth("admin", fmt.Sprintf("guess-%d", i))
			if many {
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.18.%d.%d", i/250%250, i%250+1))
			}
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
}

// lines counts the lines of a file, but the poller's: the servers of this
// test have no agent between the runs and no /load, which the poller says
// once per server, whatever the floods do.
func lines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if !strings.Contains(sc.Text(), "component=poll") {
			n++
		}
	}
	return n
}
