// Package poll reads the load of simulation servers that have no agent, as
// the original session server did: GET http(s)://<entry>/load, its number
// taken as the load (PROTOCOL §2). A site can so replace the session server
// first and roll out agents later. It knows HTTP and the registry's Report;
// whether a server is polled is the registry's to say (an agent's
// heartbeats always win).
package poll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/simgate/simgate/internal/alloc"
)

// Registry is what the poller needs of the registry.
type Registry interface {
	WantsPoll(server string, now time.Time) bool
	Apply(rep alloc.Report) error
}

// Options configures a Poller.
type Options struct {
	Servers  []string // the configured entries
	SSL      bool     // https:// rather than http://, as the original chose
	Registry Registry
	Logger   *slog.Logger
	// Period between two polls of one server (default 2 s; the original's was 5 s).
	Period time.Duration
	// Client makes the requests (default: one with a timeout of Period).
	Client *http.Client
	// OnReport, when set, sees each applied report (the mail policy watches loads).
	OnReport func(alloc.Report)
	// Parallel bounds the requests in flight (default 64).
	Parallel int
}

// Poller polls the servers no agent speaks for.
type Poller struct {
	o      Options
	mu     sync.Mutex      // guards noted, busy and failed (a leaf)
	noted  map[string]bool // "no agent: polling" said for this server
	busy   map[string]bool // a request in flight
	failed map[string]string
	sem    chan struct{}
	wg     sync.WaitGroup
}

// New builds a poller.
func New(o Options) *Poller {
	if o.Period <= 0 {
		o.Period = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Client == nil {
		o.Client = (&Poller{o: o}).client()
	}
	if o.Parallel <= 0 {
		o.Parallel = 64
	}
	return &Poller{o: o, noted: map[string]bool{}, busy: map[string]bool{}, failed: map[string]string{},
		sem: make(chan struct{}, o.Parallel)}
}

// client is the default HTTP client of a poller.
func (p *Poller) client() *http.Client {
	period := p.o.Period
	if period <= 0 {
		period = 2 * time.Second
	}
	return &http.Client{Timeout: period, CheckRedirect: sameHost}
}

// sameHost follows a redirect only on the polled server's own host and
// never to a /session: a simulation server answering with a redirect must
// not make the coordinator poll another host, or book a session on itself
// at every poll.
func sameHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("more than 3 redirects")
	}
	if req.URL.Host != via[0].URL.Host {
		return fmt.Errorf("redirected off the server's host, to %s", req.URL.Host)
	}
	if strings.HasSuffix(req.URL.Path, "/session") {
		return errors.New("redirected to a /session")
	}
	return nil
}

// URL is where server's load is read: the scheme from ssl, then the entry
// as configured (host/port through Apache's rewrite, or host:port).
func URL(entry string, ssl bool) string {
	if ssl {
		return "https://" + entry + "/load"
	}
	return "http://" + entry + "/load"
}

// Run polls every period until ctx ends, then waits for requests in flight.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(p.o.Period)
	defer t.Stop()
	defer p.wg.Wait()
	p.round(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.round(ctx)
		}
	}
}

func (p *Poller) round(ctx context.Context) {
	now := time.Now()
	for _, s := range p.o.Servers {
		if !p.o.Registry.WantsPoll(s, now) {
			p.mu.Lock()
			if p.noted[s] {
				delete(p.noted, s)
				p.o.Logger.Info("an agent speaks for this server: polling stopped", "server", s)
			}
			p.mu.Unlock()
			continue
		}
		p.mu.Lock()
		if p.busy[s] {
			p.mu.Unlock()
			continue // the last request is still out: never two at once
		}
		p.busy[s] = true
		if !p.noted[s] {
			p.noted[s] = true
			p.o.Logger.Info("no agent: polling "+URL(s, p.o.SSL), "server", s)
		}
		p.mu.Unlock()
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-p.sem }()
			p.poll(ctx, s)
			p.mu.Lock()
			delete(p.busy, s)
			p.mu.Unlock()
		}()
	}
}

// poll reads one server's load and applies it. No answer, an error status
// or a body that is not a number is no report: one lost poll is not
// "down"; the registry's silence timeout (3 periods) decides that.
func (p *Poller) poll(ctx context.Context, server string) {
	load, err := p.read(ctx, server)
	p.note(server, err)
	if err != nil {
		return
	}
	rep := alloc.Report{Server: server, Status: alloc.StatusUp, Load: load, Sessions: -1,
		Interval: p.o.Period, At: time.Now(), Polled: true}
	if p.o.Registry.Apply(rep) != nil {
		return // an agent spoke meanwhile: its report wins
	}
	if p.o.OnReport != nil {
		p.o.OnReport(rep)
	}
}

type pollError string

func (e pollError) Error() string { return string(e) }

func (p *Poller) read(ctx context.Context, server string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, URL(server, p.o.SSL), nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.o.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, pollError("answered " + resp.Status)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(body)), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, pollError("answered " + strconv.Quote(string(body)) + ", not a load")
	}
	return min(max(v, 0), 100), nil
}

// note logs a server's poll failing, once per different error, and its recovery.
func (p *Poller) note(server string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev, failing := p.failed[server]
	switch {
	case err == nil && failing:
		delete(p.failed, server)
		p.o.Logger.Info("polled server answers again", "server", server)
	case err != nil && (!failing || prev != err.Error()):
		p.failed[server] = err.Error()
		p.o.Logger.Warn("polled server does not answer", "server", server, "url", URL(server, p.o.SSL), "error", err)
	}
}
