package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/notify/smtptest"
)

// visitorPace is each member's share of the load: a new visitor every
// 100 ms (10 a second), whose booking (3 s, no session ever starts here)
// stays well inside the farm's room.
const visitorPace = 100 * time.Millisecond

// visitors is a load of new visitors behind Apache's balancer (README, High
// availability): a member takes visitors while its /readyz answers 200
// within Apache's check timeout, and a request that fails at the transport
// (a member killed, or hung, since its check) goes to the next ready
// member, as mod_proxy_balancer resends it. Every visitor has an address
// of its own. Refused counts the answers of ready members that named no
// server; errors the visitors no member answered.
type visitors struct {
	t      *testing.T
	client *http.Client
	check  *http.Client
	mu     sync.Mutex // guards bases
	bases  []string   // "" while a member is out of the balancer
	seq    atomic.Int64
	placed atomic.Int64
	refuse atomic.Int64
	errs   atomic.Int64
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// startVisitors sends visitors to members until halt (or the test's end).
func startVisitors(t *testing.T, members []*farm) *visitors {
	t.Helper()
	v := &visitors{t: t, stop: make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second}, check: &http.Client{Timeout: time.Second}}
	for _, f := range members {
		v.bases = append(v.bases, f.base)
	}
	for i := range members {
		v.wg.Add(1)
		go v.run(i)
	}
	t.Cleanup(func() { v.halt() })
	return v
}

// set tells the balancer member i's address: "" takes it out (stopped),
// a new one puts it back (a restart moves its HTTP port).
func (v *visitors) set(i int, base string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.bases[i] = base
}

func (v *visitors) base(i int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bases[i%len(v.bases)]
}

// halt stops the load and returns what it got.
func (v *visitors) halt() (placed, refused, errs int64) {
	v.once.Do(func() { close(v.stop) })
	v.wg.Wait()
	return v.placed.Load(), v.refuse.Load(), v.errs.Load()
}

func (v *visitors) run(i int) {
	defer v.wg.Done()
	tick := time.NewTicker(visitorPace)
	defer tick.Stop()
	for {
		select {
		case <-v.stop:
			return
		case <-tick.C:
		}
		if base := v.base(i); base != "" && v.ready(base) {
			v.visit(i, base)
		}
	}
}

// ready is the balancer's health check: /readyz 200 within a second.
func (v *visitors) ready(base string) bool {
	resp, err := v.check.Get(base + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (v *visitors) visit(i int, base string) {
	n := v.seq.Add(1)
	addr := fmt.Sprintf("10.%d.%d.%d", 100+n>>16&127, n>>8&255, n&255)
	for tried := 1; ; tried++ {
		body, err := v.session(base, addr)
		if err == nil {
			if strings.HasPrefix(body, "ws://") {
				v.placed.Add(1)
			} else if v.refuse.Add(1) <= 3 {
				v.t.Logf("a ready member refused a visitor at %s: %q", time.Now().Format("15:04:05.000"), body)
			}
			return
		}
		// The member died or hung since its check: the next ready one.
		if base = v.nextReady(i + tried); base == "" || tried == len(v.bases) {
			if v.errs.Add(1) <= 3 {
				v.t.Logf("no member answered a visitor: %v", err)
			}
			return
		}
	}
}

// nextReady is the first ready member from member i on, or "".
func (v *visitors) nextReady(i int) string {
	for k := range len(v.bases) {
		if b := v.base(i + k); b != "" && v.ready(b) {
			return b
		}
	}
	return ""
}

func (v *visitors) session(base, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/session", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := v.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode >= 500 {
		err = fmt.Errorf("%s", resp.Status)
	}
	return string(body), err
}

// mailWant is a mail a scenario must cause exactly once.
type mailWant struct{ subject, server string }

// mailCount is what the SMTP server got against what was due.
type mailCount struct {
	expected, delivered, duplicated, lost, unexpected int
}

// countMails matches the mails msgs against want: each due mail once, no
// other mail.
func countMails(msgs []smtptest.Message, want []mailWant) mailCount {
	c := mailCount{expected: len(want), delivered: len(msgs)}
	seen := make([]int, len(want))
	for _, m := range msgs {
		matched := false
		for i, w := range want {
			if strings.Contains(m.Data, "Subject: "+w.subject+"\r\n") && strings.Contains(m.Data, w.server+" simulation server") {
				seen[i]++
				matched = true
				break
			}
		}
		if !matched {
			c.unexpected++
		}
	}
	for _, n := range seen {
		if n == 0 {
			c.lost++
		}
		c.duplicated += max(0, n-1)
	}
	return c
}

// figures is what a fault scenario cost: one line of scripts/faults.sh's
// table per run.
type figures struct {
	placed, refused, errors int64
	falseDowns              int
	mails                   *mailCount    // nil: no mail server in the scenario
	election                time.Duration // 0: no leader was lost
	onDrained               *int          // sessions on a drained server; nil: none drained
}

// report logs the figures as one "fault figures:" line (scripts/faults.sh
// reads it) and fails the test on any refusal by a ready member, visitor
// no member answered, false down, or lost, duplicated or unexpected mail.
func (fg figures) report(t *testing.T) {
	t.Helper()
	mails, election := "mails=-", "election=-"
	if m := fg.mails; m != nil {
		mails = fmt.Sprintf("mails_expected=%d mails_delivered=%d mails_duplicated=%d mails_lost=%d mails_unexpected=%d",
			m.expected, m.delivered, m.duplicated, m.lost, m.unexpected)
	}
	if fg.election > 0 {
		election = "election=" + fg.election.Round(time.Millisecond).String()
	}
	drained := "on_drained=-"
	if fg.onDrained != nil {
		drained = fmt.Sprintf("on_drained=%d", *fg.onDrained)
	}
	t.Logf("fault figures: placed=%d refused=%d errors=%d false_downs=%d %s %s %s",
		fg.placed, fg.refused, fg.errors, fg.falseDowns, mails, drained, election)
	if fg.refused > 0 || fg.errors > 0 || fg.falseDowns > 0 {
		t.Errorf("%d visitors refused by a ready member, %d answered by none, %d false downs", fg.refused, fg.errors, fg.falseDowns)
	}
	if m := fg.mails; m != nil && (m.duplicated > 0 || m.lost > 0 || m.unexpected > 0) {
		t.Errorf("mails: %d duplicated, %d lost, %d unexpected", m.duplicated, m.lost, m.unexpected)
	}
	if fg.placed == 0 {
		t.Error("no visitor placed: the scenario ran without its load")
	}
}

// downs is the number of times each member saw a server go down.
func downs(t *testing.T, members []*farm) []float64 {
	t.Helper()
	out := make([]float64, len(members))
	for i, f := range members {
		out[i] = max(0, f.scrape(t).value("simgate_state_changes_total", "state", "down"))
	}
	return out
}

// falseDowns is the downs members saw since before, beyond the expected
// ones each.
func falseDowns(t *testing.T, members []*farm, before []float64, expected int) int {
	t.Helper()
	n := 0
	for i, now := range downs(t, members) {
		n += max(0, int(now-before[i])-expected)
	}
	return n
}

// downEvents counts the "down" events any member publishes (PROTOCOL §2),
// on a connection that follows the cluster through restarts: what a
// rolling upgrade costs, where each member's own counters start afresh.
func downEvents(t *testing.T, urls string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe("simgate.event.down.>", func(m *nats.Msg) {
		n.Add(1)
		t.Logf("down: %s %s", m.Subject, m.Data)
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &n
}
