package opsapi

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/simgate/simgate/internal/bus"
)

type farm struct {
	mu     sync.Mutex
	drains []string
}

func (f *farm) ServersDoc() []byte { return []byte(`{"servers":[]}`) }
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
	subj := bus.Subjects{Prefix: "simgate"}
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
	if err := json.Unmarshal(m.Data, &info); err != nil || len(info.Endpoints) != 4 {
		t.Errorf("service info: %v %s", err, m.Data)
	}
}
