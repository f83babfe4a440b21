package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/simgate/simgate/internal/domain"
)

// ServerGauge is one server's figures on /metrics.
type ServerGauge struct {
	Server   string
	Load     float64
	State    domain.State
	LastSeen time.Time // zero: never heard from
}

// RegisterServers serves every server's load, state and last heartbeat,
// read from servers at each scrape.
func (m *Metrics) RegisterServers(servers func() []ServerGauge) {
	m.Register(&serverCollector{
		servers: servers,
		load:    prometheus.NewDesc("simgate_server_load", "Last load reported by a server, percent.", []string{"server"}, nil),
		state:   prometheus.NewDesc("simgate_server_state", "1 for the state a server is in.", []string{"server", "state"}, nil),
		seen:    prometheus.NewDesc("simgate_server_last_heartbeat_seconds", "Unix time of a server's last heartbeat.", []string{"server"}, nil),
	})
}

// Flag serves a gauge that is 1 while f says true, else 0.
func (m *Metrics) Flag(name, help string, f func() bool) {
	m.GaugeFunc(name, help, func() float64 {
		if f() {
			return 1
		}
		return 0
	})
}

// serverCollector makes the per-server gauges at each scrape.
type serverCollector struct {
	servers func() []ServerGauge
	load    *prometheus.Desc
	state   *prometheus.Desc
	seen    *prometheus.Desc
}

func (s *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.load
	ch <- s.state
	ch <- s.seen
}

func (s *serverCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range s.servers() {
		ch <- prometheus.MustNewConstMetric(s.load, prometheus.GaugeValue, v.Load, v.Server)
		for _, st := range []domain.State{domain.Unknown, domain.Up, domain.Full, domain.Down, domain.Draining} {
			val := 0.0
			if v.State == st {
				val = 1
			}
			ch <- prometheus.MustNewConstMetric(s.state, prometheus.GaugeValue, val, v.Server, st.String())
		}
		if !v.LastSeen.IsZero() {
			ch <- prometheus.MustNewConstMetric(s.seen, prometheus.GaugeValue, float64(v.LastSeen.UnixNano())/1e9, v.Server)
		}
	}
}
