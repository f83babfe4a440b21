package cluster

import (
	"testing"

	"github.com/simgate/simgate/internal/domain"
	"github.com/simgate/simgate/internal/schema"
)

type reports struct {
	applied []domain.Report
	lost    []string
}

func (r *reports) Apply(rep domain.Report) error { r.applied = append(r.applied, rep); return nil }
func (r *reports) ConnectionLost(entry string)   { r.lost = append(r.lost, entry) }

// TestSink: a heartbeat reaches the registry and the report hook; a lost
// connection marks its server down only while this member judges.
func TestSink(t *testing.T) {
	for _, tc := range []struct {
		name   string
		judges func() bool
		lost   int
	}{
		{"alone", nil, 1},
		{"with a majority", func() bool { return true }, 1},
		{"without a majority", func() bool { return false }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := &reports{}
			shown := 0
			s := Sink{Registry: reg, OnReport: func(domain.Report) { shown++ }, Judges: tc.judges}
			if err := s.Heartbeat(schema.Heartbeat{V: 1, Server: "a/1", Status: schema.StatusUp, Load: 10, Interval: 1}); err != nil {
				t.Fatal(err)
			}
			s.ConnectionLost("a/1")
			if len(reg.applied) != 1 || reg.applied[0].Server != "a/1" || shown != 1 || len(reg.lost) != tc.lost {
				t.Errorf("applied %v, shown %d, lost %v", reg.applied, shown, reg.lost)
			}
		})
	}
}
