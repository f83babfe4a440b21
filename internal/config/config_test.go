package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/testutil"
)

func TestSeedConfigLoads(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "cyberbotics1.epfl.ch" || c.Port != 1999 || !c.PortRewrite || !c.SSL {
		t.Errorf("keys read wrong: %+v", c)
	}
	if len(c.SimulationServers) != 1 || c.SimulationServers[0] != "cyberbotics1.epfl.ch/2000" {
		t.Errorf("simulationServers = %v", c.SimulationServers)
	}
	if c.MailSenderUser != "support@cyberbotics.com" {
		t.Errorf("mailSenderUser defaults to mailSender, got %q", c.MailSenderUser)
	}
	if c.MailServerPort != 587 || c.MailOff() != "" {
		t.Errorf("mail: port %d, off %q", c.MailServerPort, c.MailOff())
	}
	if got := c.MonitorURL(); got != "https://cyberbotics1.epfl.ch/1999/monitor" {
		t.Errorf("MonitorURL = %q", got)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "localhost" || !c.SSL || c.Port != 1999 || !c.PortRewrite || c.LogDir != "log" ||
		c.Debug || c.MailServerPort != 25 || c.LoadThreshold != 95 || c.HeartbeatTimeout != 0 ||
		c.NATS.Listen != "127.0.0.1:4222" {
		t.Errorf("defaults: %+v", c)
	}
	if c.MailOff() == "" {
		t.Error("mail must be off without administrator")
	}
	if !c.Queue.Enabled || c.Queue.Max != 1000 || c.Queue.MaxWait != 30*time.Minute || c.Queue.MaxPerAddress != 200 {
		t.Errorf("queue defaults (PROTOCOL §3): %+v", c.Queue)
	}
}

func TestQueueKeys(t *testing.T) {
	c, err := Parse([]byte(`{"queue": {"enabled": false, "max": 50, "maxWait": 90.5}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Queue.Enabled || c.Queue.Max != 50 || c.Queue.MaxWait != 90500*time.Millisecond || c.Queue.MaxPerAddress != 50 {
		t.Errorf("%+v (tickets per address at most the line)", c.Queue)
	}
}

func TestGoodValues(t *testing.T) {
	c, err := Parse([]byte(`{"ssl": false, "heartbeatTimeout": 2.5, "loadThreshold": 80,
		"simulationServers": ["a.example/2000", "b:2001"], "nats": {"listen": "localhost:0"},
		"sslKey": "/x", "sslCertificate": "/y", "localAgent": "b:2001"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.SSL || c.HeartbeatTimeout != 2500*time.Millisecond || c.LoadThreshold != 80 || c.LocalAgent != "b:2001" {
		t.Errorf("%+v", c)
	}
	if len(c.Warnings) != 2 {
		t.Errorf("obsolete keys must warn once each: %v", c.Warnings)
	}
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name, doc, key, want string
	}{
		{"port fraction", `{"port": 1999.5}`, "port", "want a port number"},
		{"port a word", `{"port": "http"}`, "port", "want a port number"},
		{"mail port a word", `{"mailServerPort": "smtp"}`, "mailServerPort", "want a port number"},
		{"nested unknown key", `{"mail": {"holdof": 5}}`, "mail.holdof", `did you mean "holdOff"`},
		{"port range", `{"port": 70000}`, "port", "between 1 and 65535"},
		{"port negative", `{"port": -1}`, "port", "between 1 and 65535"},
		{"servers not array", `{"simulationServers": "a/1"}`, "simulationServers", "array of strings"},
		{"threshold range", `{"loadThreshold": 0}`, "loadThreshold", "(0, 100]"},
		{"threshold type", `{"loadThreshold": true}`, "loadThreshold", "want a number"},
		{"timeout negative", `{"heartbeatTimeout": -1}`, "heartbeatTimeout", "out of range"},
		{"nats not object", `{"nats": "x"}`, "nats", "want an object"},
		{"nats unknown key", `{"nats": {"lisen": "127.0.0.1:1"}}`, "nats.lisen", `did you mean "listen"`},
		{"nats cluster without routes", `{"nats": {"cluster": {"name": "c", "listen": "127.0.0.1:6222"}}}`, "nats.cluster.routes", "required"},
		{"nats cluster without listen", `{"nats": {"cluster": {"routes": ["nats-route://127.0.0.1:6222"]}}}`, "nats.cluster.listen", "required"},
		{"nats cluster bad name", `{"nats": {"cluster": {"name": "a.b", "listen": "127.0.0.1:6222", "routes": ["nats-route://127.0.0.1:6222"]}}}`, "nats.cluster.name", "one NATS token"},
		{"nats cluster bad route", `{"nats": {"cluster": {"listen": "127.0.0.1:6222", "routes": ["127.0.0.1:6222"]}}}`, "nats.cluster.routes", "not nats-route"},
		{"nats cluster route password", `{"nats": {"cluster": {"listen": "127.0.0.1:6222", "routes": ["nats-route://u:p@127.0.0.1:6222"]}}}`, "nats.cluster.routes", "not nats-route"},
		{"nats cluster open without users", `{"nats": {"cluster": {"listen": "0.0.0.0:6222", "routes": ["nats-route://127.0.0.1:6222"]}}}`, "nats.cluster.listen", "authentication"},
		{"nats cluster remote route without users", `{"nats": {"cluster": {"listen": "127.0.0.1:6222", "routes": ["nats-route://coord2.example.org:6222"]}}}`, "nats.cluster.routes", "authentication"},
		{"nats listen bad", `{"nats": {"listen": "nowhere"}}`, "nats.listen", "not host:port"},
		{"nats beyond loopback", `{"nats": {"listen": "0.0.0.0:4222"}}`, "nats.listen", "requires NATS authentication"},
		{"simulationServers misspelled", `{"simulationServer": ["a/1"]}`, "simulationServer", `"simulationServers", the list of simulation servers, is absent`},
		{"simulationServers in the wrong case", `{"simulationservers": ["a/1"]}`, "simulationservers", `"simulationServers"`},
		{"nats websocket without users", `{"nats": {"websocket": {"listen": "127.0.0.1:4223"}}}`, "nats.websocket.listen", "nats.users"},
		{"local agent unlisted", `{"simulationServers": ["a/1"], "localAgent": "b/2"}`, "localAgent", "not one of"},
		{"trusted proxy", `{"http": {"trustedProxies": ["apache"]}}`, "http.trustedProxies", "neither an IP"},
		{"queue max zero", `{"queue": {"max": 0}}`, "queue.max", "between 1 and 100000"},
		{"queue maxWait zero", `{"queue": {"maxWait": 0}}`, "queue.maxWait", "positive"},
		{"queue enabled string", `{"queue": {"enabled": "yes"}}`, "queue.enabled", "boolean"},
		{"queue unknown key", `{"queue": {"maxwait": 60}}`, "queue.maxwait", `"maxWait"`},
		{"nats users not array", `{"nats": {"users": {}}}`, "nats.users", "array of objects"},
		{"nats user unknown key", `{"nats": {"users": [{"user": "a", "pasword": "x"}]}}`, "nats.users[0].pasword", `did you mean "password"`},
		{"nats user two secrets", `{"nats": {"users": [{"user": "a", "password": "x", "token": "0123456789abcdef", "role": "monitor"}]}}`, "nats.users[0]", "exactly one of"},
		{"nats user no secret", `{"nats": {"users": [{"user": "a", "role": "monitor"}]}}`, "nats.users[0]", "exactly one of"},
		{"nats password without user", `{"nats": {"users": [{"password": "x", "role": "monitor"}]}}`, "nats.users[0].user", "needs a user name"},
		{"nats short token", `{"nats": {"users": [{"token": "short", "role": "monitor"}]}}`, "nats.users[0].token", "at least 16"},
		{"nats bad nkey", `{"nats": {"users": [{"nkey": "SUAB", "role": "monitor"}]}}`, "nats.users[0].nkey", "not a public user nkey"},
		{"nats bad bcrypt", `{"nats": {"users": [{"user": "a", "password": "$2a$xx", "role": "monitor"}]}}`, "nats.users[0].password", "bcrypt"},
		{"nats role", `{"nats": {"users": [{"user": "a", "password": "x", "role": "root"}]}}`, "nats.users[0].role", `want "agent", "monitor", "admin" or "system"`},
		{"nats admin bound", `{"nats": {"users": [{"user": "a", "password": "x", "role": "admin", "servers": ["s/1"]}]}}`, "nats.users[0].servers", "bound to none"},
		{"nats agent unbound", `{"nats": {"users": [{"user": "a", "password": "x", "role": "agent"}]}}`, "nats.users[0].servers", "must be bound"},
		{"nats agent unknown server", `{"simulationServers": ["a/1"], "nats": {"users": [{"user": "a", "password": "x", "role": "agent", "servers": ["b/1"]}]}}`, "nats.users[0].servers", "not one of simulationServers"},
		{"nats monitor bound", `{"nats": {"users": [{"user": "a", "password": "x", "role": "monitor", "servers": ["a/1"]}]}}`, "nats.users[0].servers", "bound to none"},
		{"nats reserved user", `{"nats": {"users": [{"user": "simgate-agent", "password": "x", "role": "monitor"}]}}`, "nats.users[0].user", "coordinator's own"},
		{"nats user twice", `{"nats": {"users": [{"user": "a", "password": "x", "role": "monitor"}, {"user": "a", "password": "y", "role": "monitor"}]}}`, "nats.users[1].user", "twice"},
		{"servers share a node", `{"simulationServers": ["a.b/1", "a_b/1"]}`, "simulationServers", "share the NATS subject token"},
		{"nats tls half", `{"nats": {"tls": {"cert": "/x"}}}`, "nats.tls", "set both or neither"},
		{"nats tls missing", `{"nats": {"tls": {"cert": "/nonexistent/c.pem", "key": "/nonexistent/k.pem"}}}`, "nats.tls.cert", "not a readable regular file"},
		{"nats tls device", `{"nats": {"tls": {"cert": "/dev/zero", "key": "/dev/zero"}}}`, "nats.tls.cert", "not a readable regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ce.Key != tt.key || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got key %q, error %q; want key %q and %q", ce.Key, err, tt.key, tt.want)
			}
		})
	}
}

// TestOriginalsOddValues: what the original ran with starts simgate too,
// read as the original read it, with one warning naming the key.
func TestOriginalsOddValues(t *testing.T) {
	tests := []struct {
		name, doc string
		warn      []string // each warning must contain one of these, in order
		check     func(Config) bool
	}{
		{"comment key", `{"_comment": "x"}`, []string{`"_comment" is not a session server key`}, nil},
		{"typo", `{"simulationServers": [], "simulationServer": []}`, []string{`"simulationServer" is not a session server key and is ignored (did you mean "simulationServers"?)`}, nil},
		{"simulation server key", `{"maxConnections": 20}`, []string{`"maxConnections"`}, nil},
		{"ssl as a string", `{"ssl": "false"}`, []string{`"ssl": "false" is a non-empty string, which the original read as TRUE`},
			func(c Config) bool { return c.SSL }},
		{"ssl as 0", `{"ssl": 0}`, []string{`"ssl": 0 is a number, read as false`}, func(c Config) bool { return !c.SSL }},
		{"debug as 1", `{"debug": 1}`, []string{`"debug": 1 is a number, read as true`}, func(c Config) bool { return c.Debug }},
		{"debug null", `{"debug": null}`, []string{`"debug": null is null, read as false`}, func(c Config) bool { return !c.Debug }},
		{"port as a string", `{"port": "2001"}`, []string{`"port": "2001" is a string, read as the number 2001`}, func(c Config) bool { return c.Port == 2001 }},
		{"mail port as a string", `{"mailServerPort": "587"}`, []string{`"mailServerPort": "587" is a string`}, func(c Config) bool { return c.MailServerPort == 587 }},
		{"duplicated entry", `{"simulationServers": ["a/1", "b/1", "a/1"]}`, []string{`item 2 ("a/1") is listed twice`},
			func(c Config) bool { return len(c.SimulationServers) == 2 }},
		{"entry without port", `{"simulationServers": ["host"]}`, []string{`item 0 ("host"): want host/port`}, nil},
		{"administrator not an address", `{"administrator": "nobody"}`, []string{`"administrator": "nobody" is not an e-mail address`}, nil},
		{"empty server", `{"server": ""}`, []string{`"server": is empty`}, nil},
		{"byte-order mark", "\xEF\xBB\xBF{}", []string{"byte-order mark"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Warnings) != len(tt.warn) {
				t.Fatalf("warnings %q, want %d", c.Warnings, len(tt.warn))
			}
			for i, w := range tt.warn {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("warning %q, want it to say %q", c.Warnings[i], w)
				}
			}
			if tt.check != nil && !tt.check(c) {
				t.Errorf("read wrong: %+v", c)
			}
		})
	}
}

// TestOriginalFiles: real files the original starts with (testdata/original)
// load, each with a warning for each odd key and none for the rest.
func TestOriginalFiles(t *testing.T) {
	want := map[string][]string{
		"local.json":                  nil,
		"shared-with-simulation.json": {"_comment", "allowedRepositories", "docker", "maxConnections", "monitorLogEnabled", "projectsDir", "shareIdleTime", "timeout"},
		"string-ports.json":           {"mailServerPort", "port"},
		"numeric-booleans.json":       {"debug", "portRewrite", "ssl"},
		"duplicate-entry.json":        {"simulationServers"},
		"ssl-false-string.json":       {"ssl"},
		"bom.json":                    {"byte-order mark"},
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "original", "*.json"))
	if len(files) != len(want) {
		t.Fatalf("files %v, want one per case of %v", files, want)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			keys := want[filepath.Base(f)]
			if len(c.Warnings) != len(keys) {
				t.Fatalf("warnings %q, want one for each of %v", c.Warnings, keys)
			}
			for i, k := range keys {
				if !strings.Contains(c.Warnings[i], k) {
					t.Errorf("warning %q does not name %s", c.Warnings[i], k)
				}
			}
		})
	}
}

func TestCommentsSayWhy(t *testing.T) {
	_, err := Parse([]byte("{\n  // the farm\n  \"port\": 1999\n}"))
	if err == nil || !strings.Contains(err.Error(), "JSON has no comments") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %v, want it to say JSON has no comments, at line 2", err)
	}
}

func TestNATSAuth(t *testing.T) {
	c, err := Parse([]byte(`{"simulationServers": ["a.example/2000", "b.example/2000"],
		"nats": {"listen": "0.0.0.0:4222", "users": [
			{"user": "sim-a", "password": "secret", "role": "agent", "servers": ["a.example/2000"]},
			{"token": "0123456789abcdef-b", "role": "agent", "servers": ["b.example/2000"]},
			{"nkey": "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4", "role": "monitor"},
			{"user": "ops", "password": "$2a$11$3kIDaCxw.Glsl1.u5nKa6eUnNDLV5HV9tIuUp7EHhMt6Nm9myW1aS", "role": "monitor"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.NATS.Users) != 4 || c.NATS.Users[1].Servers[0] != "b.example/2000" || c.NATS.Users[2].Role != "monitor" {
		t.Errorf("users read wrong: %+v", c.NATS.Users)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "without TLS") {
		t.Errorf("beyond loopback without TLS must warn once: %v", c.Warnings)
	}
	if u := c.NATS.Users; len(u) != 4 || u[0].User != "sim-a" || u[3].Password == "" {
		t.Errorf("users: %+v", u)
	}
}

func TestUnreadable(t *testing.T) {
	for name, doc := range map[string]string{
		"truncated": `{"port": 1999`,
		"array":     `[1, 2]`,
		"trailing":  `{} {}`,
		"empty":     ``,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(doc)); err == nil {
				t.Fatal("want an error")
			}
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.json"))
	if err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("missing file: %v", err)
	}
}

func TestPasswordFileReadableByOthersWarns(t *testing.T) {
	p := filepath.Join(t.TempDir(), "session.json")
	if err := os.WriteFile(p, []byte(`{"mailSenderPassword": "secret"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || strings.Contains(c.Warnings[0], "secret") {
		t.Errorf("want one warning that does not show the password: %v", c.Warnings)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if c, _ = Load(p); len(c.Warnings) != 0 {
		t.Errorf("mode 600 must not warn: %v", c.Warnings)
	}
}

func TestCheckEntry(t *testing.T) {
	for entry, ok := range map[string]bool{
		"cyberbotics1.epfl.ch/2000": true, "localhost:2000": true, "[::1]:2000": true,
		"host": false, "host/": false, "/2000": false, "host/0": false, "host/abc": false, "a b/1": false,
	} {
		if got := CheckEntry(entry) == nil; got != ok {
			t.Errorf("CheckEntry(%q) ok = %v, want %v", entry, got, ok)
		}
	}
}

// The README's secure setup parses, once its certificate paths point at
// real files.
// TestMailCertificateRule: mail.verifyCertificate decides; without it a
// mail server on this machine (and no mail.caFile) is not verified, as the
// original verified none; any other is.
func TestMailCertificateRule(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		server, ca string
		set        *bool
		want       bool
	}{
		{"mail.example.org", "", nil, true},
		{"localhost", "", nil, false},
		{"127.0.0.1", "", nil, false},
		{"::1", "", nil, false},
		{"127.0.0.1", "/etc/ssl/ca.pem", nil, true},
		{"localhost", "", &yes, true},
		{"mail.example.org", "", &no, false},
	} {
		c := Config{MailServer: tc.server}
		c.Mail.CAFile, c.Mail.VerifyCertificate = tc.ca, tc.set
		if got := c.VerifyMailCertificate(); got != tc.want {
			t.Errorf("server %q, caFile %q, verifyCertificate %v: verify %v, want %v", tc.server, tc.ca, tc.set, got, tc.want)
		}
	}
}

func TestSecureExampleParses(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "session-secure.json.example"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key := testutil.TLSFiles(t)
	doc := strings.NewReplacer("/etc/simgate/nats-cert.pem", cert, "/etc/simgate/nats-key.pem", key).Replace(string(data))
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.NATS.Users) != 4 || c.NATS.Users[2].Role != "admin" || c.NATS.Users[3].Role != "system" || c.NATS.TLSCert != cert || c.NATS.Listen != "0.0.0.0:4222" {
		t.Errorf("read wrong: %+v", c.NATS)
	}
	if _, err := Parse(data); err == nil || !strings.Contains(err.Error(), "nats.tls.cert") {
		t.Errorf("missing certificate files: %v, want an error naming nats.tls.cert", err)
	}
}

// TestClusterKeys: nats.cluster as PROTOCOL §3 writes it; routes beyond
// loopback with users, whose secret every member derives alike.
func TestClusterKeys(t *testing.T) {
	doc := `{"nats": {"listen": "0.0.0.0:4222", "users": [{"user": "a", "password": "pw-0123456789abcdef", "role": "agent", "servers": ["s/1"]}],
		"cluster": {"name": "farm", "listen": "0.0.0.0:6222", "routes": ["nats-route://c1.example.org:6222", "nats-route://c2.example.org:6222"]}},
		"simulationServers": ["s/1"]}`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	cl := c.NATS.Cluster
	if cl == nil || cl.Name != "farm" || cl.Listen != "0.0.0.0:6222" || len(cl.Routes) != 2 {
		t.Fatalf("%+v", cl)
	}
	c2, _ := Parse([]byte(doc))
	if s := c.NATS.RouteSecret(); len(s) != 64 || s != c2.NATS.RouteSecret() {
		t.Errorf("route secret %q differs between two members reading one file", s)
	}
	if d, _ := Parse([]byte(`{"nats": {"cluster": {"listen": "127.0.0.1:6222", "routes": ["nats-route://127.0.0.1:6222"]}}}`)); d.NATS.Cluster.Name != "simgate" || d.NATS.RouteSecret() != "" {
		t.Errorf("default name %q, secret without users %q", d.NATS.Cluster.Name, d.NATS.RouteSecret())
	}
}
