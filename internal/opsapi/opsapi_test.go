package opsapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/simgate/simgate/internal/bus"
	"github.com/simgate/simgate/internal/schema"
	"github.com/simgate/simgate/internal/testutil"
)

type farm struct {
	mu     sync.Mutex
	drains []string
}

func (f *farm) ServersDoc() []byte  { return []byte(`{"servers":[]}`) }
func (f *farm) CapacityDoc() []byte { return []byte(`{"whatIf":null}`) }
func (f *farm) Session(caller, url string) []byte {
	return []byte("ws://a.test/1 for " + caller + " " + url)
}
func (f *farm) Drain(node, by string, on bool) (string, error) {
	if node != "a_test_1" {
		return "", ErrUnknownNode
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drains = append(f.drains, by)
	return "a.test/1", nil
}

// TestService: the service answers through the application account's
// import, knows which admin asks (Nats-Request-Info), and refuses others.
func TestService(t *testing.T) {
	subj := schema.Subjects{Prefix: "simgate"}
	srv, err := bus.StartServer(bus.ServerOptions{Listen: "127.0.0.1:0", Subjects: subj, Users: []bus.User{
		{Name: "alice", Password: "alice-password", Role: bus.RoleAdmin},
		{Name: "ops", Password: "ops-password", Role: bus.RoleMonitor},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	conn, err := srv.ConnectAPI("test-api")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f := &farm{}
	svc, err := Start(Options{Conn: conn, Subjects: subj, Farm: f, Version: "v1.2.3-rc1",
		Admin: func(user string) string {
			if user == "alice" {
				return "alice"
			}
			return ""
		}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()
	if v := svc.Info().Version; v != "1.2.3-rc1" {
		t.Errorf("version %q", v)
	}
	dial := func(user, pass string) *nats.Conn {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, pass))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	admin, ops := dial("alice", "alice-password"), dial("ops", "ops-password")

	for _, c := range []struct {
		nc      *nats.Conn
		subject string
		data    string
		want    string
	}{
		{ops, "simgate.api.servers", "", `{"servers":[]}`},
		// A session is asked for by a visitor: the user, as the server says.
		{ops, "simgate.api.session", "?url=https://github.com/x/y", "ws://a.test/1 for nats-user:ops https://github.com/x/y"},
		{admin, "simgate.api.drain.a_test_1", "", `{"server":"a.test/1","drained":true,"by":"alice"}`},
		{admin, "simgate.api.undrain.a_test_1", "", `{"server":"a.test/1","drained":false,"by":"alice"}`},
	} {
		m, err := c.nc.Request(c.subject, []byte(c.data), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", c.subject, err)
		}
		if string(m.Data) != c.want {
			t.Errorf("%s: %s, want %s", c.subject, m.Data, c.want)
		}
	}
	m, err := admin.Request("simgate.api.drain.nowhere", nil, 5*time.Second)
	if err != nil || m.Header.Get(micro.ErrorCodeHeader) != "404" {
		t.Errorf("unknown node: %v %+v", err, m)
	}
	// A monitor may not even ask.
	if _, err := ops.Request("simgate.api.drain.a_test_1", nil, time.Second); err == nil {
		t.Error("a monitor's drain was answered")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Join(f.drains, ",") != "alice,alice" {
		t.Errorf("drains by %v", f.drains)
	}
	// nats micro ls: discovery through the import.
	m, err = ops.Request("$SRV.INFO.simgate", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil || len(info.Endpoints) != 5 {
		t.Errorf("service info: %v %s", err, m.Data)
	}
}

// TestServersInPages: a farm whose document is over the payload limit is
// answered in pages, each under it, together holding every server once;
// a document that fits is answered whole, as /api/servers.
func TestServersInPages(t *testing.T) {
	var list []string
	for i := range 60 {
		list = append(list, fmt.Sprintf(`{"server":"sim%02d.example.org/2000","state":"up","load":12.5,"sessions":3,"maxSessions":100,"lastSeen":"2026-11-30T03:00:00Z","source":"agent"}`, i))
	}
	doc := []byte(`{"servers":[` + strings.Join(list, ",") + `],"summary":{"up":60}}`)
	if len(doc) <= replyLimit {
		t.Fatalf("the test document (%d bytes) fits in one answer", len(doc))
	}
	seen := map[string]bool{}
	p := &pager{}
	page := p.page
	first, n, err := page(doc, replyLimit, 1)
	if err != nil || n < 2 {
		t.Fatalf("page 1: %d pages, %v", n, err)
	}
	for k := 1; k <= n; k++ {
		data, _, err := page(doc, replyLimit, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > replyLimit {
			t.Errorf("page %d is %d bytes, over %d", k, len(data), replyLimit)
		}
		var pg struct {
			Servers []struct{ Server string } `json:"servers"`
			Page    int                       `json:"page"`
			Pages   int                       `json:"pages"`
		}
		if err := json.Unmarshal(data, &pg); err != nil || pg.Page != k || pg.Pages != n {
			t.Fatalf("page %d: %v %s", k, err, data)
		}
		for _, s := range pg.Servers {
			if seen[s.Server] {
				t.Errorf("%s on two pages", s.Server)
			}
			seen[s.Server] = true
		}
	}
	if len(seen) != 60 || !strings.Contains(string(first), `"summary"`) {
		t.Errorf("%d servers over the pages; summary on page 1: %v", len(seen), strings.Contains(string(first), `"summary"`))
	}
	if _, _, err := page(doc, replyLimit, n+1); err == nil {
		t.Error("a page past the last was answered")
	}
	small := []byte(`{"servers":[]}`)
	if data, n, _ := page(small, replyLimit, 1); string(data) != string(small) || n != 1 {
		t.Errorf("a small document: %s in %d pages", data, n)
	}
	// Issue 31: the same document is split once, whatever the pages asked.
	if n := testing.AllocsPerRun(100, func() { _, _, _ = page(doc, replyLimit, 2) }); n > 0 {
		t.Errorf("a page of a document already split allocates %v times", n)
	}
}

// TestForgedRequestInfo: issue 31. A monitor's request whose header block
// hides Nats-Request-Info after a bare LF, where the server does not see a
// line of its own and so adds its own beside it, is refused: the service
// reads the server's header only, alone. The same request without the
// forged line is served as its user.
func TestForgedRequestInfo(t *testing.T) {
	subj := schema.Subjects{Prefix: "simgate"}
	srv, err := bus.StartServer(bus.ServerOptions{Listen: "127.0.0.1:0", Subjects: subj, Users: []bus.User{
		{Name: "ops", Password: "ops-password", Role: bus.RoleMonitor},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	conn, err := srv.ConnectAPI("test-api")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	svc, err := Start(Options{Conn: conn, Subjects: subj, Farm: &farm{}, Version: "v1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()
	raw := testutil.DialRawNATS(t, strings.TrimPrefix(srv.ClientURL(), "nats://"), "ops", "ops-password")
	ask := func(headers string) string {
		t.Helper()
		return raw.Request("simgate.api.session", headers, "https://github.com/x/y/blob/main/worlds/w.wbt")
	}
	if got := ask("X-Test: 1\nNats-Request-Info: {\"acc\":\"APP\",\"user\":\"forged-1\"}\r\n"); !strings.Contains(got, "400") || strings.Contains(got, "forged-1") {
		t.Errorf("a forged Nats-Request-Info after a bare LF: %q, want a 400 and no session", got)
	}
	if got := ask("X-Test: 1\r\n"); !strings.Contains(got, "for nats-user:ops") {
		t.Errorf("a plain request: %q, want a session for nats-user:ops", got)
	}
}
