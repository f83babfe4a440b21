package coordinator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/simgate/simgate/internal/alloc"
)

// serverCollector exports every server's load and state at scrape time.
type serverCollector struct {
	reg   *alloc.Registry
	load  *prometheus.Desc
	state *prometheus.Desc
	seen  *prometheus.Desc
}

func (c *Coordinator) registerGauges() {
	c.metrics.Register(&serverCollector{
		reg:   c.reg,
		load:  prometheus.NewDesc("simgate_server_load", "Last load reported by a server, percent.", []string{"server"}, nil),
		state: prometheus.NewDesc("simgate_server_state", "1 for the state a server is in.", []string{"server", "state"}, nil),
		seen:  prometheus.NewDesc("simgate_server_last_heartbeat_seconds", "Unix time of a server's last heartbeat.", []string{"server"}, nil),
	})
	c.metrics.GaugeFunc("simgate_nats_connections", "Client connections on the embedded NATS server.",
		func() float64 { return float64(c.nats.NumClients()) })
	c.metrics.GaugeFunc("simgate_cluster_members", "Coordinators this one reaches, itself included (1 alone).",
		func() float64 { return float64(c.nats.Members()) })
	c.metrics.GaugeFunc("simgate_cluster_leader", "1 on the coordinator that sends the mails (the JetStream meta leader; always 1 alone).",
		func() float64 {
			if c.lead.Holds() {
				return 1
			}
			return 0
		})
	c.metrics.GaugeFunc("simgate_available", "1 when at least one server can take a session.", func() float64 {
		if c.reg.Available() {
			return 1
		}
		return 0
	})
}

func (s *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.load
	ch <- s.state
	ch <- s.seen
}

func (s *serverCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range s.reg.Snapshot() {
		ch <- prometheus.MustNewConstMetric(s.load, prometheus.GaugeValue, v.Load, v.Server)
		for _, st := range []alloc.State{alloc.Unknown, alloc.Up, alloc.Full, alloc.Down, alloc.Draining} {
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
