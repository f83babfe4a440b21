package coordinator

import (
	"github.com/simgate/simgate/internal/capacity"
	"github.com/simgate/simgate/internal/cluster"
	"github.com/simgate/simgate/internal/history"
)

// startHistory records the farm's demand and plans from it (README,
// Capacity).
func (c *Coordinator) startHistory() (err error) {
	q := c.cfg.Queue
	c.capacity, err = capacity.NewService(capacity.ServiceOptions{Conn: c.stateConn, Subjects: c.subj, Replicas: cluster.Replicas(c.members),
		Member: c.nats.Name(), Logger: c.log, Queue: capacity.Queue{Enabled: q.Enabled, Max: q.Max, MaxWait: q.MaxWait},
		Sources: &history.Parts{Demand: c.api.Demand, Refused: c.metrics.TurnedAwayCounts, Registry: c.reg, Waits: &c.waits}})
	if err == nil {
		c.spawn(c.capacity.Run)
	}
	return err
}
