package httpapi

import (
	"net/http"
	"time"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/domain"
)

// serverJSON is one item of /api/servers. The first six fields are the
// contract's (PROTOCOL.md §1); the rest feed the monitor page.
type serverJSON struct {
	Server      string  `json:"server"`
	State       string  `json:"state"`
	Load        float64 `json:"load"`
	Sessions    int     `json:"sessions"`
	MaxSessions int     `json:"maxSessions"`
	LastSeen    *string `json:"lastSeen"`
	Source      string  `json:"source,omitempty"` // "agent" or "poll" (PROTOCOL §2); absent before the first report
	// Sharing is the server's repository policy as its agent reports it
	// (PROTOCOL §1.1); absent when it reports none (it runs every world).
	Sharing           *domain.Sharing `json:"sharing,omitempty"`
	DedicatedSessions uint64          `json:"dedicatedSessions"` // sessions placed here for a repository it is dedicated to (or runs every world)
	SharedSessions    uint64          `json:"sharedSessions"`    // sessions placed here on its shared idle time
	Effective         float64         `json:"effectiveLoad"`
	Reason            string          `json:"reason,omitempty"`
	DrainedBy         string          `json:"drainedBy,omitempty"` // the operator who drained it (simgate.api.drain, the monitor's button)
	Since             string          `json:"since"`
	domain.Vector                     // cpu, memory, swap, gpu, gpuMemory, vram, in this place
	Interval          float64         `json:"interval,omitempty"`
	HandedOut         uint64          `json:"handedOut"`
	Probe             string          `json:"probe,omitempty"`
	Saturated         string          `json:"saturated,omitempty"`
	Link              string          `json:"link"`
	History           []float64       `json:"history"`
}

type summaryJSON struct {
	Servers   int      `json:"servers"`
	Available int      `json:"available"`
	MeanLoad  *float64 `json:"meanLoad"`
	HandedOut uint64   `json:"handedOut"`
	NoServer  uint64   `json:"noServer"`
	// Refusals is the visitors turned away since start, by reason
	// (simgate_refusals_total's; only the reasons that happened).
	Refusals  map[string]uint64 `json:"refusals"`
	Threshold float64           `json:"loadThreshold"`
	Version   string            `json:"version"`
	Started   string            `json:"started"`
	Now       string            `json:"now"`
	// Coordinator is this coordinator in its cluster (members 1 alone).
	Coordinator *Member `json:"coordinator,omitempty"`
	// Alerts say what does not work that an operator must fix or know:
	// mail that cannot be delivered, a cluster without its majority.
	Alerts []string `json:"alerts"`
}

// Member is a coordinator as its cluster sees it.
type Member struct {
	Name    string `json:"name"`    // its NATS server name
	Leader  bool   `json:"leader"`  // it sends the mails
	Members int    `json:"members"` // coordinators it reaches, itself included
	// Quorum: a majority of the cluster's members is reached (always true
	// alone); without it the member places nobody and sends no mail.
	Quorum bool `json:"quorum"`
	// Needed is the majority: members needed for the cluster's state.
	Needed int `json:"needed"`
}

type serversJSON struct {
	Servers []serverJSON `json:"servers"`
	Summary summaryJSON  `json:"summary"`
	Queue   queueJSON    `json:"queue"`
}

// queueJSON is the waiting room's line (PROTOCOL §1.2): how many wait and
// for how long the oldest has (whole seconds); enabled is false with the
// room off (queue.enabled).
type queueJSON struct {
	Enabled    bool  `json:"enabled"`
	Waiting    int   `json:"waiting"`
	OldestWait int64 `json:"oldestWaitSeconds"`
	// History is the first visitor's wait (seconds) every 5 s over the
	// last 10 minutes, for the monitor's plot.
	History []float64 `json:"history"`
}

// link is a server's own monitor page, built as the original built it.
func (a *API) link(entry string) string {
	if a.o.SSL {
		return "https://" + entry + "/monitor"
	}
	return "http://" + entry + "/monitor"
}

func (a *API) serversDoc() serversJSON {
	views := a.o.Registry.Snapshot()
	hist := a.history.get()
	doc := serversJSON{Servers: make([]serverJSON, len(views))}
	for i, v := range views {
		s := serverJSON{Server: v.Server, State: v.State.String(), Load: v.Load, MaxSessions: v.MaxSessions,
			Effective: v.Effective, Reason: v.Reason, Since: v.Since.UTC().Format(time.RFC3339),
			Vector: v.Vector, Interval: v.Interval.Seconds(),
			HandedOut: v.HandedOut, Probe: v.Note, Link: a.link(v.Server), History: hist[v.Server],
			Source: v.Source.String(), DrainedBy: v.DrainedBy, DedicatedSessions: v.ByTier[alloc.TierDedicated], SharedSessions: v.ByTier[alloc.TierShared]}
		if sh := v.Sharing; sh != nil {
			s.Sharing = &domain.Sharing{Allowed: nonNil(sh.Allowed), Blocked: nonNil(sh.Blocked), Docker: sh.Docker, ShareIdle: sh.ShareIdle}
		}
		if v.Sessions > 0 {
			s.Sessions = v.Sessions
		}
		if !v.LastSeen.IsZero() {
			ls := v.LastSeen.UTC().Format(time.RFC3339Nano)
			s.LastSeen = &ls
			// The chart ends on the load of now, so that it moves with the page.
			if len(s.History) == historyLen {
				s.History = s.History[1:]
			}
			s.History = append(s.History, historyPoint(v))
		}
		if v.State == alloc.Full {
			s.Saturated = v.Vector.Saturated()
		}
		if s.History == nil {
			s.History = []float64{}
		}
		if v.State == alloc.Up && v.Effective < a.o.Registry.Threshold() {
			doc.Summary.Available++
		}
		doc.Servers[i] = s
	}
	handed, none := a.o.Registry.Counts()
	doc.Summary.Servers = len(views)
	doc.Summary.HandedOut, doc.Summary.NoServer = handed, none
	doc.Summary.Refusals = a.o.Metrics.TurnedAwayCounts()
	doc.Summary.Threshold = a.o.Registry.Threshold()
	doc.Summary.Version = a.o.Version
	doc.Summary.Started = a.o.Started.UTC().Format(time.RFC3339)
	doc.Summary.Now = time.Now().UTC().Format(time.RFC3339Nano)
	if a.o.Member != nil {
		m := a.o.Member()
		doc.Summary.Coordinator = &m
	}
	if mean, ok := a.o.Registry.MeanLoad(); ok {
		doc.Summary.MeanLoad = &mean
	}
	if a.o.Line != nil {
		n, oldest := a.o.Line.Stats()
		doc.Queue = queueJSON{Enabled: true, Waiting: n, OldestWait: int64(oldest / time.Second), History: a.history.waited()}
	}
	doc.Summary.Alerts = []string{}
	if a.o.Alerts != nil {
		doc.Summary.Alerts = append(doc.Summary.Alerts, a.o.Alerts()...)
	}
	return doc
}

// servers answers the shared farm document, at most one refresh old.
func (a *API) servers(w http.ResponseWriter, r *http.Request) {
	doc, _ := a.feed.current()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(doc)
}

// capacity serves the capacity document (README, Capacity): the
// history's plots and the what-if; 404 when the coordinator keeps none.
func (a *API) capacity(w http.ResponseWriter, r *http.Request) {
	if a.o.Capacity == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(a.o.Capacity())
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
