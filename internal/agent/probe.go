package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// probeCollector checks that the simulation server answers over HTTP.
type probeCollector struct {
	url    string
	client *http.Client
}

// NewProbe checks url with at most timeout per attempt.
func NewProbe(url string, timeout time.Duration) Collector {
	return &probeCollector{url: url, client: &http.Client{Timeout: timeout}}
}

// DefaultProbeURL derives the local URL of the simulation server of entry:
// host/2000 or host:2000 → http://127.0.0.1:2000/load.
func DefaultProbeURL(entry string) string {
	i := strings.LastIndexAny(entry, "/:")
	return fmt.Sprintf("http://127.0.0.1:%s/load", entry[i+1:])
}

func (p *probeCollector) Name() string { return "probe" }

func (p *probeCollector) Collect(ctx context.Context, r *Reading) error {
	r.ServiceChecked = true
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		r.ServiceErr = err
		return nil
	}
	resp, err := p.client.Do(req)
	if err != nil {
		r.ServiceErr = fmt.Errorf("GET %s: %w", p.url, unwrapURL(err))
		return nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		r.ServiceErr = fmt.Errorf("GET %s: %s", p.url, resp.Status)
	}
	return nil
}

// unwrapURL drops net/http's repetition of the method and URL.
func unwrapURL(err error) error {
	if u, ok := err.(interface{ Unwrap() error }); ok && u.Unwrap() != nil {
		return u.Unwrap()
	}
	return err
}
