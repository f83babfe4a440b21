package capacity

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/history"
	"github.com/simgate/simgate/internal/schema"
)

// ServiceOptions configures a Service.
type ServiceOptions struct {
	Conn     *nats.Conn // the coordinator's own, in the account the state lives in
	Subjects schema.Subjects
	Replicas int
	Member   string // this coordinator's name in the cluster
	Sources  history.Sources
	Queue    Queue
	Logger   *slog.Logger
}

// Service records the farm's demand into the cluster's history stream
// and plans from it (/api/capacity, simgate.api.capacity).
type Service struct {
	rec     *history.Recorder
	planner *Planner
}

// NewService makes the service; Run records.
func NewService(o ServiceOptions) (*Service, error) {
	stream, err := history.NewStream(o.Conn, o.Subjects, o.Replicas)
	if err != nil {
		return nil, err
	}
	s := &Service{rec: history.NewRecorder(history.Options{Member: o.Member, Sources: o.Sources, Sink: stream,
		Logger: o.Logger.With("component", "history")})}
	s.planner = NewPlanner(PlannerOptions{Queue: o.Queue, Logger: o.Logger.With("component", "capacity"),
		Read: func(ctx context.Context, since time.Time) ([]history.Minute, error) {
			kept, _, err := stream.Read(ctx, since)
			return append(kept, s.rec.Current()...), err // what is not kept yet too
		}})
	return s, nil
}

// Run records until ctx ends.
func (s *Service) Run(ctx context.Context) { s.rec.Run(ctx) }

// Document is the capacity document, the history read within 5 s; brief:
// without its plots (Planner.Document).
func (s *Service) Document(ctx context.Context, brief bool) []byte {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	doc, short := s.planner.Document(ctx)
	if brief {
		return short
	}
	return doc
}
