// Package opsapi is the farm as a NATS service (nats.go/micro), for
// operators' `nats` CLI and for tools: simgate.api.servers (the
// /api/servers document), simgate.api.session (a placement, as /session),
// and, for the admin role only, simgate.api.drain.<node> and
// simgate.api.undrain.<node>; simgate.api.capacity (the capacity what-if). `nats micro ls|info|stats simgate` see it.
package opsapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/simgate/simgate/internal/schema"
)

// Farm is what the service answers from; the coordinator is one.
type Farm interface {
	// ServersDoc is the /api/servers document.
	ServersDoc() []byte
	// CapacityDoc is the /api/capacity document without its plots: the
	// what-if (README, Capacity).
	CapacityDoc() []byte
	// Session places a session for caller (a visitor like /session's: the
	// same rate limit, per-address bookings and holds), as /session?url= does.
	Session(caller, url string) []byte
	// Drain drains (on) or undrains the server on node, on the word of by.
	Drain(node, by string, on bool) (server string, err error)
}

// ErrUnknownNode is Drain's error for a node that names no server.
var ErrUnknownNode = errors.New("no configured server on that node")

// Options configures Start.
type Options struct {
	Conn     *nats.Conn // in the account the service is exported from
	Subjects schema.Subjects
	Farm     Farm
	// Admin names the admin behind a request's user (Nats-Request-Info's
	// "user": a user name or an nkey), "" when it is none.
	Admin   func(user string) string
	Version string
	Logger  *slog.Logger
}

// Start adds the service on o.Conn.
func Start(o Options) (micro.Service, error) {
	svc, err := micro.AddService(o.Conn, micro.Config{
		Name:        "simgate",
		Version:     semver(o.Version),
		Description: "the simgate farm: servers, placement, drains",
	})
	if err != nil {
		return nil, err
	}
	pages, capPages := &pager{}, &pager{}
	add := func(name, subject string, h micro.HandlerFunc) error {
		return svc.AddEndpoint(name, h, micro.WithEndpointSubject(subject))
	}
	err = errors.Join(
		add("servers", o.Subjects.API("servers"), func(r micro.Request) { paged(o, pages, r, o.Farm.ServersDoc) }),
		add("session", o.Subjects.API("session"), func(r micro.Request) {
			who, ok := caller(r)
			if !ok {
				_ = r.Error("400", forgedInfo, nil)
				return
			}
			url := strings.TrimPrefix(strings.TrimSpace(string(r.Data())), "?url=")
			_ = r.Respond(o.Farm.Session(who, url))
		}),
		add("capacity", o.Subjects.API("capacity"), func(r micro.Request) { paged(o, capPages, r, o.Farm.CapacityDoc) }),
		add("drain", o.Subjects.API("drain.*"), func(r micro.Request) { drain(o, r, true) }),
		add("undrain", o.Subjects.API("undrain.*"), func(r micro.Request) { drain(o, r, false) }),
	)
	if err == nil {
		// The endpoints answer from the moment Start returns: the server has
		// their subscriptions.
		err = o.Conn.Flush()
	}
	if err != nil {
		_ = svc.Stop()
		return nil, err
	}
	return svc, nil
}

// replyLimit is the largest answer: the embedded server's payload limit,
// less room for the headers.
const replyLimit = schema.MaxHeartbeat - 512

// paged answers a document (servers, capacity), in pages when it is over
// the payload limit (pages.go); nothing is dropped silently.
func paged(o Options, pages *pager, r micro.Request, doc func() []byte) {
	var req pageRequest
	if d := strings.TrimSpace(string(r.Data())); d != "" && d != "''" {
		if err := json.Unmarshal([]byte(d), &req); err != nil {
			_ = r.Error("400", `want no data, or {"page":N}`, nil)
			return
		}
	}
	data, n, err := pages.page(doc(), replyLimit, max(req.Page, 1))
	if err != nil {
		_ = r.Error("404", err.Error(), nil)
		return
	}
	h := micro.Headers{"Content-Type": {"application/json"}}
	if n > 1 {
		h["Simgate-Pages"] = []string{strconv.Itoa(n)}
	}
	if err := r.Respond(data, micro.WithHeaders(h)); err != nil {
		o.Logger.Warn("the farm's NATS service could not answer", "subject", r.Subject(), "bytes", len(data), "error", err)
	}
}

// requestInfo is the part of the server's Nats-Request-Info header read here.
type requestInfo struct {
	Account string `json:"acc"`
	User    string `json:"user"`
	Host    string `json:"host"`
}

// forgedInfo answers a request whose header block holds the server's
// Nats-Request-Info more than once.
const forgedInfo = "the request's headers hold Nats-Request-Info more than once: one of them is not the server's"

// info is the server's Nats-Request-Info of r; ok is false when the header
// comes more than once. The server replaces a client's copy on a line of
// its own, but one after a bare LF (a line break only some parsers see)
// got past it and came first: 300 forged requests of a monitor placed 300
// sessions as as many users (issue 31). Only the server's, alone, is read.
func info(r micro.Request) (requestInfo, bool) {
	var info requestInfo
	vals := r.Headers().Values("Nats-Request-Info")
	if len(vals) > 1 {
		return info, false
	}
	if len(vals) == 1 {
		if strings.ContainsAny(vals[0], "\r\n") || json.Unmarshal([]byte(vals[0]), &info) != nil {
			return requestInfo{}, false
		}
	}
	return info, true
}

// caller is who asks for a session, as a visitor: the NATS user, or for an
// anonymous local client, its address (the server vouches for both in
// Nats-Request-Info, which no client can set); ok is false for a request
// whose header was forged.
func caller(r micro.Request) (string, bool) {
	i, ok := info(r)
	switch {
	case !ok:
		return "", false
	case i.User != "":
		return "nats-user:" + i.User, true
	case i.Host != "":
		return "nats-host:" + i.Host, true
	}
	return "nats", true
}

func drain(o Options, r micro.Request, on bool) {
	info, ok := info(r)
	if !ok {
		_ = r.Error("400", forgedInfo, nil)
		return
	}
	admin := ""
	if o.Admin != nil && info.User != "" {
		admin = o.Admin(info.User)
	}
	if admin == "" {
		// The permissions already keep everyone else off these subjects.
		_ = r.Error("403", "only an admin may drain or undrain a server", nil)
		return
	}
	subject := r.Subject()
	node := subject[strings.LastIndexByte(subject, '.')+1:]
	server, err := o.Farm.Drain(node, admin, on)
	if errors.Is(err, ErrUnknownNode) {
		_ = r.Error("404", "no configured server on node "+node, nil)
		return
	}
	if err != nil {
		_ = r.Error("500", err.Error(), nil)
		return
	}
	verb := "drained"
	if !on {
		verb = "undrained"
	}
	o.Logger.Info("server "+verb+" over NATS", "server", server, "by", admin)
	_ = r.RespondJSON(struct {
		Server  string `json:"server"`
		Drained bool   `json:"drained"`
		By      string `json:"by"`
	}{server, on, admin})
}

var semverRE = regexp.MustCompile(`^v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)`)

// semver is the version as micro wants it ("0.0.0-dev" for a development build).
func semver(v string) string {
	if m := semverRE.FindStringSubmatch(v); m != nil {
		return m[1]
	}
	return "0.0.0-dev"
}
