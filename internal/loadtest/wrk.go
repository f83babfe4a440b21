package loadtest

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Result is one load tool run against one target.
type Result struct {
	Target     string
	Throughput float64       // requests per second
	P50, P99   time.Duration // latency
	Errors     string        // non-2xx or socket errors, as wrk says them
}

// Wrk drives a URL with wrk (Debian's wrk package).
type Wrk struct {
	Threads, Conns int
	Duration       time.Duration
	Script         string // a wrk Lua script file, "" for none
}

// visitorsScript makes every request come from another visitor (its own
// X-Forwarded-For, which the coordinator trusts from 127.0.0.1), so that
// each one books a session rather than repeating a booking (PROTOCOL §1).
const visitorsScript = `local n = 0
request = function()
  n = n + 1
  local ip = "10." .. (n % 250) .. "." .. (math.floor(n / 250) % 250) .. "." .. (math.floor(n / 62500) % 250 + 1)
  return wrk.format("GET", nil, {["X-Forwarded-For"] = ip})
end
`

var (
	reqsRe = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRe  = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	errRe  = regexp.MustCompile(`(?m)^\s+(Non-2xx or 3xx responses: \d+|Socket errors: .*)$`)
)

// Run runs wrk against url and parses its summary.
func (w Wrk) Run(ctx context.Context, target, url string) (Result, error) {
	args := []string{"-t", strconv.Itoa(w.Threads), "-c", strconv.Itoa(w.Conns),
		"-d", fmt.Sprintf("%ds", int(w.Duration.Seconds())), "--latency"}
	if w.Script != "" {
		args = append(args, "-s", w.Script)
	}
	cmd := exec.CommandContext(ctx, "wrk", append(args, url)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Result{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	return parseWrk(target, string(out))
}

func parseWrk(target, out string) (Result, error) {
	r := Result{Target: target}
	m := reqsRe.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	r.Throughput, _ = strconv.ParseFloat(m[1], 64)
	for _, p := range pctRe.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[p[3]]
		d := time.Duration(v * float64(unit))
		if p[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	var errs []string
	for _, e := range errRe.FindAllStringSubmatch(out, -1) {
		errs = append(errs, strings.TrimSpace(e[1]))
	}
	r.Errors = strings.Join(errs, "; ")
	return r, nil
}
