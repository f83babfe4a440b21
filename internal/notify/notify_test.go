package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/domain"
	"github.com/simgate/simgate/internal/notify/smtptest"
	"github.com/simgate/simgate/internal/testutil"
)

type sent struct {
	mu    sync.Mutex
	mails [][2]string
}

func (s *sent) send(subject, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails = append(s.mails, [2]string{subject, body})
}

func (s *sent) all() [][2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][2]string(nil), s.mails...)
}

func newPolicy(s *sent) *Policy {
	return NewPolicy(PolicyOptions{Threshold: 95, Hysteresis: 5, HoldOff: 10 * time.Minute,
		MonitorURL: "https://cyberbotics1.epfl.ch/1999/monitor", Send: s.send})
}

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestFourMails(t *testing.T) {
	var s sent
	p := newPolicy(&s)
	const srv = "cyberbotics1.epfl.ch/2000"
	cpu := 97.0
	p.Change(domain.Change{Server: srv, From: domain.Unknown, To: domain.Up, At: t0, Load: 10})
	p.Change(domain.Change{Server: srv, From: domain.Up, To: domain.Down, Reason: "its agent's NATS connection closed", At: t0})
	p.Change(domain.Change{Server: srv, From: domain.Down, To: domain.Up, At: t0.Add(time.Second), Load: 12})
	p.Load(srv, domain.StatusUp, 12, domain.Vector{}, t0.Add(time.Second))
	p.Load(srv, domain.StatusUp, 97, domain.Vector{CPU: &cpu}, t0.Add(2*time.Second))
	p.Load(srv, domain.StatusUp, 40, domain.Vector{}, t0.Add(3*time.Second))
	// The original's lines (PROTOCOL §3), its loads written as Python wrote floats.
	want := []struct{ subject, first string }{
		{SubjectDown, srv + " simulation server may be down, as it is not responding to the requests of the session server..."},
		{SubjectUp, srv + " simulation server is up and running again (load = 12.0%)."},
		{SubjectFull, srv + " simulation server has reached maximum load (97.0%)."},
		{SubjectAvailable, srv + " simulation server is available again (load = 40.0%)."},
	}
	got := s.all()
	if len(got) != len(want) {
		t.Fatalf("%d mails: %q", len(got), got)
	}
	for i, w := range want {
		if got[i][0] != w.subject || !strings.HasPrefix(got[i][1], "Hello,\n\n"+w.first+"\n") {
			t.Errorf("mail %d: %q / %q; want %q opening with Hello, a blank line and %q", i, got[i][0], got[i][1], w.subject, w.first)
		}
		if !strings.HasSuffix(got[i][1], "\nCheck it at https://cyberbotics1.epfl.ch/1999/monitor\n\n-Simulation Server\n") {
			t.Errorf("mail %d does not end with the link and the signature: %q", i, got[i][1])
		}
	}
	if !strings.Contains(got[0][1], "NATS connection closed") || !strings.Contains(got[2][1], "CPU") {
		t.Errorf("why missing: %q %q", got[0][1], got[2][1])
	}
}

func TestPlannedStopAndStartupMailNothing(t *testing.T) {
	var s sent
	p := newPolicy(&s)
	p.Change(domain.Change{Server: "a/1", From: domain.Unknown, To: domain.Up, At: t0})
	p.Change(domain.Change{Server: "a/1", From: domain.Up, To: domain.Down, Planned: true, At: t0})
	p.Change(domain.Change{Server: "a/1", From: domain.Down, To: domain.Up, At: t0})
	if got := s.all(); len(got) != 0 {
		t.Errorf("mails %q", got)
	}
	p.NotResponding("b/1", "no heartbeat", t0)
	p.Change(domain.Change{Server: "b/1", From: domain.Unknown, To: domain.Up, At: t0.Add(time.Minute)})
	if got := s.all(); len(got) != 2 || got[0][0] != SubjectDown || got[1][0] != SubjectUp {
		t.Errorf("grace: %q", got)
	}
}

func TestFlappingIsBounded(t *testing.T) {
	var s sent
	p := newPolicy(&s)
	now := t0
	downs := 0
	// Down and up every 20 s for a simulated 10 minutes, the policy ticking each second.
	for now.Before(t0.Add(10 * time.Minute)) {
		p.Change(domain.Change{Server: "a/1", From: domain.Up, To: domain.Down, Reason: "silent", At: now})
		downs++
		for i := 0; i < 10; i++ {
			now = now.Add(time.Second)
			p.Tick(now)
		}
		p.Change(domain.Change{Server: "a/1", From: domain.Down, To: domain.Up, At: now})
		for i := 0; i < 10; i++ {
			now = now.Add(time.Second)
			p.Tick(now)
		}
	}
	got := s.all()
	t.Logf("%d downs in 10 minutes: %d mails", downs, len(got))
	if len(got) > 3 {
		t.Errorf("%d mails for one flapping server, want at most 3", len(got))
	}
	last := got[len(got)-1]
	if !strings.Contains(last[1], "more times") {
		t.Errorf("the digest must say what happened: %q", last[1])
	}
}

// TestLoadMailsFollowStatus: only an up server's load feeds the full and
// available mails, and not its first sample.
func TestLoadMailsFollowStatus(t *testing.T) {
	tests := []struct {
		name   string
		status []domain.Status
		loads  []float64
		want   int
	}{
		{"first sample", []domain.Status{domain.StatusUp}, []float64{100}, 0},
		{"second sample", []domain.Status{domain.StatusUp, domain.StatusUp}, []float64{100, 100}, 1},
		{"service down", []domain.Status{domain.StatusServiceDown, domain.StatusServiceDown, domain.StatusServiceDown}, []float64{95.16, 99, 99}, 0},
		{"draining", []domain.Status{domain.StatusDraining, domain.StatusDraining}, []float64{99, 99}, 0},
		{"first sample after service down", []domain.Status{domain.StatusUp, domain.StatusServiceDown, domain.StatusUp}, []float64{10, 99, 99}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sent
			p := newPolicy(&s)
			for i, st := range tt.status {
				p.Load("a/1", st, tt.loads[i], domain.Vector{}, t0.Add(time.Duration(i)*time.Second))
			}
			if got := s.all(); len(got) != tt.want {
				t.Errorf("%d mails, want %d: %q", len(got), tt.want, got)
			}
		})
	}
}

func TestPythonFloats(t *testing.T) {
	for v, want := range map[float64]string{30: "30.0", 37.5: "37.5", 95.16: "95.16", 0: "0.0", 100: "100.0"} {
		if got := pct(v); got != want {
			t.Errorf("pct(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestLoadHoveringAtThresholdIsQuiet(t *testing.T) {
	var s sent
	p := newPolicy(&s)
	now := t0
	for i := 0; i < 600; i++ { // 10 minutes of 1 s heartbeats alternating 94 and 96
		load := 94.0
		if i%2 == 1 {
			load = 96
		}
		p.Load("a/1", domain.StatusUp, load, domain.Vector{}, now)
		p.Tick(now)
		now = now.Add(time.Second)
	}
	if got := s.all(); len(got) > 2 {
		t.Errorf("%d mails for a load oscillating 94–96, want at most 2: %q", len(got), got)
	}
}

func smtpFor(srv *smtptest.Server) *SMTP {
	host, port, _ := net.SplitHostPort(srv.Addr)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CAPEM)
	var p int
	fmt.Sscan(port, &p)
	return &SMTP{Host: host, Port: p, User: srv.User, Password: srv.Password,
		From: "support@example.org", To: "admin@example.org", TLS: &tls.Config{RootCAs: pool}}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSMTPStartTLSAndAuth(t *testing.T) {
	srv := smtptest.Start(t, "127.0.0.1:0")
	tr := smtpFor(srv)
	if err := tr.Send(context.Background(), Mail{ID: "1.abc", Subject: SubjectDown, Body: "a/1 simulation server may be down\n", Created: t0}); err != nil {
		t.Fatal(err)
	}
	m := srv.Messages()[0]
	if m.User != srv.User || m.From != "support@example.org" || len(m.To) != 1 || m.To[0] != "admin@example.org" {
		t.Errorf("%+v", m)
	}
	for _, h := range []string{"Subject: " + SubjectDown, "From: Simulation Server <support@example.org>", "To: Administrator <admin@example.org>", "Message-ID: <simgate.1.abc@example.org>"} {
		if !strings.Contains(m.Data, h) {
			t.Errorf("header %q missing in\n%s", h, m.Data)
		}
	}
	bad := *tr
	bad.Password = "wrong"
	if err := bad.Send(context.Background(), Mail{Subject: "x", Body: "x"}); err == nil {
		t.Error("wrong password accepted")
	}
	untrusted := *tr
	untrusted.TLS = nil
	if err := untrusted.Send(context.Background(), Mail{Subject: "x", Body: "x"}); err == nil {
		t.Error("untrusted certificate accepted")
	}
}

func TestQueueRetriesUntilTheServerComes(t *testing.T) {
	// The transport is set up for a server that is down.
	srv := smtptest.Start(t, "127.0.0.1:0")
	srv.SetDown(true)
	tr := smtpFor(srv)
	failures := make(chan struct{}, 100)
	q, err := NewQueue(QueueOptions{Transport: tr, Logger: quiet(), RetryMax: time.Second, GiveUp: time.Hour,
		OnFailed: func() { failures <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	begin := time.Now()
	q.Enqueue(SubjectDown, "a/1 simulation server may be down\n")
	if q.Pending() != 1 {
		t.Fatal("not queued")
	}
	// The SMTP server comes back once the queue has been failing for 3 s.
	for time.Since(begin) < 3*time.Second {
		select {
		case <-failures:
		case <-time.After(5 * time.Second):
			t.Fatal("the queue stopped retrying")
		}
	}
	srv.SetDown(false)
	select {
	case <-srv.Arrived():
	case <-time.After(10 * time.Second):
		t.Fatal("mail did not arrive after the SMTP server came back")
	}
	t.Logf("delivered %v after it was queued", time.Since(begin))
	testutil.WaitFor(t, time.Second, 10*time.Millisecond, func() error {
		if n := q.Pending(); n != 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
}

func TestPendingMailSurvivesARestart(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "session", "pending-mail.json")
	probe := smtptest.Start(t, "127.0.0.1:0")
	tr := smtpFor(probe)
	probe.Close() // down during the first run
	q, err := NewQueue(QueueOptions{Transport: tr, Logger: quiet(), Store: FileStore{Spool: spool}, RetryMax: time.Hour, GiveUp: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	q.Enqueue(SubjectFull, "a/1 simulation server has reached maximum load (97%).\n")
	q.Close()

	srv := smtptest.Start(t, "127.0.0.1:0")
	tr2 := smtpFor(srv)
	q2, err := NewQueue(QueueOptions{Transport: tr2, Logger: quiet(), Store: FileStore{Spool: spool}, RetryMax: time.Hour, GiveUp: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	select {
	case <-srv.Arrived():
	case <-time.After(10 * time.Second):
		t.Fatal("the pending mail was not sent after the restart")
	}
	if m := srv.Messages()[0]; !strings.Contains(m.Data, SubjectFull) {
		t.Errorf("%s", m.Data)
	}
}

type failing struct{}

func (failing) Send(context.Context, Mail) error { return fmt.Errorf("refused") }

func TestAbandonIsLoggedAtErrorLevel(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	abandoned := make(chan struct{}, 1)
	q, err := NewQueue(QueueOptions{Transport: failing{}, Logger: log, FirstTry: time.Millisecond,
		RetryMax: 5 * time.Millisecond, GiveUp: 20 * time.Millisecond, OnAbandoned: func() { abandoned <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Enqueue("s", "b")
	select {
	case <-abandoned:
	case <-time.After(5 * time.Second):
		t.Fatal("never abandoned")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "level=ERROR msg=\"mail abandoned\"") {
		t.Errorf("log: %s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestCorruptSpoolIsSetAside: a pending-mail file that cannot be read is
// renamed for a look and the queue starts empty: never a reason not to start.
func TestCorruptSpoolIsSetAside(t *testing.T) {
	for name, content := range map[string]string{
		"empty":       "",
		"truncated":   `[{"id":"1.a","subject":"Simulation server not responding","body":"x`,
		"random":      "\x8a\x01\xffgarbage",
		"object":      `{}`,
		"wrong type":  `[1, 2]`,
		"empty mails": `[{}]`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			spool := filepath.Join(dir, "pending-mail.json")
			if err := os.WriteFile(spool, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			q, err := NewQueue(QueueOptions{Transport: failing{}, Logger: quiet(), Store: FileStore{Spool: spool}, RetryMax: time.Second, GiveUp: time.Hour})
			if err != nil {
				t.Fatalf("a corrupt spool stopped the start: %v", err)
			}
			defer q.Close()
			if n := q.Pending(); n != 0 {
				t.Errorf("%d mails read from a corrupt file", n)
			}
			aside, _ := filepath.Glob(spool + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("set aside: %v, want one file", aside)
			}
			if data, _ := os.ReadFile(aside[0]); string(data) != content {
				t.Errorf("the file set aside does not hold what was there")
			}
		})
	}
}

// TestHoldOffStateSurvivesARestart: a server reported as not responding is
// not reported again by the next run (a crash loop would mail at each
// start), and its "working again" is still owed.
func TestHoldOffStateSurvivesARestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mail-state.json")
	var s1 sent
	p1 := NewPolicy(PolicyOptions{Threshold: 95, Hysteresis: 5, HoldOff: 10 * time.Minute, MonitorURL: "x",
		Send: s1.send, Store: FileStore{StateFile: file}, Logger: quiet()})
	p1.NotResponding("a/1", "silent", t0)
	p1.Tick(t0.Add(time.Second))
	if len(s1.all()) != 1 {
		t.Fatalf("first run: %q", s1.all())
	}

	var s2 sent
	p2 := NewPolicy(PolicyOptions{Threshold: 95, Hysteresis: 5, HoldOff: 10 * time.Minute, MonitorURL: "x",
		Send: s2.send, Store: FileStore{StateFile: file}, Logger: quiet()})
	p2.NotResponding("a/1", "silent", t0.Add(time.Minute))
	if got := s2.all(); len(got) != 0 {
		t.Errorf("the restarted run mailed again: %q", got)
	}
	p2.Change(domain.Change{Server: "a/1", From: domain.Unknown, To: domain.Up, At: t0.Add(2 * time.Minute), Load: 10})
	if got := s2.all(); len(got) != 1 || got[0][0] != SubjectUp {
		t.Errorf("working again after the restart: %q", got)
	}

	if err := os.WriteFile(file, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	NewPolicy(PolicyOptions{Threshold: 95, Store: FileStore{StateFile: file}, Send: s2.send, Logger: quiet()})
	if aside, _ := filepath.Glob(file + ".corrupt-*"); len(aside) != 1 {
		t.Errorf("a corrupt state file was not set aside: %v", aside)
	}
}

// TestClockStepAbandonsNoMail: issue 30. A pending mail's give-up age is
// the time coordinators held it on their monotonic clocks (pendingFor),
// not its wall-clock creation time: a mail written a minute before a
// +48 h clock step (here: created 48 h before this clock) is retried, not
// abandoned; its age goes on from there.
func TestClockStepAbandonsNoMail(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "pending-mail.json")
	created := time.Now().Add(-48 * time.Hour)
	data := fmt.Sprintf(`[{"id":"1-ab","subject":"s","body":"b","created":%q,"nextTry":%q,"pendingFor":%d}]`,
		created.Format(time.RFC3339Nano), created.Format(time.RFC3339Nano), time.Minute)
	if err := os.WriteFile(spool, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	failed, abandoned := make(chan struct{}, 10), make(chan struct{}, 1)
	q, err := NewQueue(QueueOptions{Transport: failing{}, Logger: quiet(), Store: FileStore{Spool: spool},
		FirstTry: time.Hour, RetryMax: time.Hour, GiveUp: time.Hour,
		OnFailed: func() { failed <- struct{}{} }, OnAbandoned: func() { abandoned <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-failed:
	case <-abandoned:
		t.Fatal("a mail pending for a minute was abandoned after a clock step")
	case <-time.After(10 * time.Second):
		t.Fatal("the pending mail was never tried")
	}
	q.Close()
	var kept []Mail
	raw, _ := os.ReadFile(spool)
	if err := json.Unmarshal(raw, &kept); err != nil || len(kept) != 1 {
		t.Fatalf("spool after the try: %s %v", raw, err)
	}
	if age := kept[0].PendingFor; age < time.Minute || age > time.Hour {
		t.Errorf("pendingFor %v, want a minute and a little", age)
	}
}

// memStore is a Store in memory: the cluster's shared record.
type memStore struct {
	mu    sync.Mutex
	mails []Mail
}

func (s *memStore) LoadMails() ([]Mail, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mails), nil
}

func (s *memStore) SaveMails(m []Mail) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails = slices.Clone(m)
	return nil
}

func (s *memStore) ForgetMail(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails = slices.DeleteFunc(s.mails, func(m Mail) bool { return m.ID == id })
	return nil
}

func (s *memStore) LoadHolds() (map[string]Hold, error) { return nil, nil }
func (s *memStore) SaveHolds(map[string]Hold) error     { return nil }

type fence struct{ holds atomic.Bool }

func (f *fence) Holds() bool { return f.holds.Load() }

// hanging is an SMTP server that hangs on the first mail, then fails it
// (a timeout); it takes the others.
type hanging struct {
	sends            atomic.Int32
	entered, release chan struct{}
}

func (h *hanging) Send(ctx context.Context, m Mail) error {
	if h.sends.Add(1) == 1 {
		close(h.entered)
		<-h.release
		return fmt.Errorf("timeout")
	}
	return nil
}

// TestStepdownWhileSMTPHangsSendsOnce: issue 30. The leader hands a mail
// to an SMTP server that hangs and loses the lead; the new leader sends
// it (it leaves the shared record); when the hung send fails and the old
// leader leads again, it does not send it a second time from memory.
func TestStepdownWhileSMTPHangsSendsOnce(t *testing.T) {
	var logs syncBuffer
	store, f := &memStore{}, &fence{}
	f.holds.Store(true)
	tr := &hanging{entered: make(chan struct{}), release: make(chan struct{})}
	q, err := NewQueue(QueueOptions{Transport: tr, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Store: store, Fence: f,
		FirstTry: time.Millisecond, RetryMax: time.Millisecond, GiveUp: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	q.Enqueue("s", "b")
	<-tr.entered // kept in the store before the attempt, now hung in SMTP
	if n := len(store.mails); n != 1 {
		t.Fatalf("%d mails in the shared record before the attempt", n)
	}
	f.holds.Store(false)
	_ = store.SaveMails(nil) // the new leader sent it
	close(tr.release)
	testutil.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "no longer sends the mails") {
			return fmt.Errorf("the old leader has not stepped down")
		}
		return nil
	})
	f.holds.Store(true)
	testutil.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "another coordinator sent meanwhile") {
			return fmt.Errorf("the old leader has not taken the lead back: %s", logs.String())
		}
		return nil
	})
	if n := q.Pending(); n != 0 {
		t.Errorf("%d mails pending on the old leader", n)
	}
	if n := tr.sends.Load(); n != 1 {
		t.Errorf("the mail was handed to SMTP %d times by the old leader, want 1", n)
	}
}

// deposing is an SMTP server that takes every mail, and the lead with the
// first: the sender loses it between the send and the write after.
type deposing struct {
	sends atomic.Int32
	fence *fence
}

func (d *deposing) Send(context.Context, Mail) error {
	if d.sends.Add(1) == 1 {
		d.fence.holds.Store(false)
	}
	return nil
}

// staleStore forgets a mail but a stale replica still lists it.
type staleStore struct{ memStore }

func (s *staleStore) ForgetMail(string) error { return nil }

// TestSentMailNotSentAgainAfterAFlicker: issue 30. The leader loses the
// lead right after SMTP took a mail, before it wrote that down: the mail
// leaves the shared record all the same (it went twice in 1 of 5 fault
// runs); and where a stale replica still lists it (1 of 6 beside CI), the
// queue that sent it does not take it back. Regained, the lead sends it
// no second time.
func TestSentMailNotSentAgainAfterAFlicker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store interface {
			Store
			forgetter
		}
		removed  bool   // the record no longer lists it once the lead is lost
		regained string // the log line that says the lead is back
	}{
		{"the record forgets it", &memStore{}, true, "now sends the mails"},
		{"a stale replica lists it", &staleStore{}, false, "still in the shared record: not sent again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			f := &fence{}
			f.holds.Store(true)
			tr := &deposing{fence: f}
			q, err := NewQueue(QueueOptions{Transport: tr, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Store: tc.store, Fence: f,
				FirstTry: time.Millisecond, RetryMax: time.Millisecond, GiveUp: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			q.Enqueue("s", "b")
			testutil.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				if !strings.Contains(logs.String(), "no longer sends the mails") {
					return fmt.Errorf("the leader has not lost the lead after the send")
				}
				return nil
			})
			if mails, _ := tc.store.LoadMails(); tc.removed && len(mails) != 0 {
				t.Errorf("the sent mail is still in the shared record: %+v", mails)
			}
			f.holds.Store(true)
			testutil.WaitFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				if strings.Count(logs.String(), tc.regained) < 1 || strings.Count(logs.String(), "now sends the mails") < 2 {
					return fmt.Errorf("the lead not regained yet: %s", logs.String())
				}
				return nil
			})
			q.Close()
			if n := tr.sends.Load(); n != 1 {
				t.Errorf("the mail was handed to SMTP %d times, want 1", n)
			}
		})
	}
}

// syncBuffer is a log sink tests read while the queue writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
