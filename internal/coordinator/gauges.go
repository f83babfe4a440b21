package coordinator

import "github.com/simgate/simgate/internal/metrics"

// registerGauges serves the registry's and the cluster's figures on
// /metrics, read at each scrape.
func (c *Coordinator) registerGauges() {
	c.metrics.RegisterServers(func() []metrics.ServerGauge {
		views := c.reg.Snapshot()
		out := make([]metrics.ServerGauge, len(views))
		for i, v := range views {
			out[i] = metrics.ServerGauge{Server: v.Server, Load: v.Load, State: v.State, LastSeen: v.LastSeen}
		}
		return out
	})
	c.metrics.GaugeFunc("simgate_nats_connections", "Client connections on the embedded NATS server.",
		func() float64 { return float64(c.nats.NumClients()) })
	c.metrics.GaugeFunc("simgate_cluster_members", "Coordinators this one reaches, itself included (1 alone).",
		func() float64 { return float64(c.nats.Members()) })
	c.metrics.Flag("simgate_cluster_leader", "1 on the coordinator that sends the mails (the JetStream meta leader; always 1 alone).", c.lead.Holds)
	c.metrics.Flag("simgate_available", "1 when at least one server can take a session.", c.reg.Available)
}
