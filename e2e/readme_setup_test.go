package e2e

import (
	"encoding/json"
	"fmt"
	"github.com/gorilla/websocket"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simgate/simgate/internal/notify/smtptest"
	"github.com/simgate/simgate/internal/testutil"
)

// TestREADMESetup is a site's first day, run from the README as written:
// "Installing", its "Apache" subsection and "Migrating from the original",
// every command in order, as root on a machine where the original runs
// (a readmeHost: this machine, with its own /etc and the rest).
//
// What a site already has is arranged first: the original's session.json
// under /home/cyberbotics (the seed's, its two servers on loopback stubs
// and its mail server the test's own), the original itself running and
// holding port 1999, and Apache serving an HTTPS site (here on a free
// loopback port, without TLS). Afterwards, visitors go through that Apache
// to the coordinator, and the agent has taken its server over.
func TestREADMESetup(t *testing.T) {
	readmeTools(t, "python3")
	readmePortsFree(t)
	src := filepath.Join(t.TempDir(), "simgate")
	copyRepo(t, src)
	h := newReadmeHost(t, "the session host", src, "")

	// The site as it stands: two simulation servers, a mail server.
	load := func(v string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/load" {
				fmt.Fprint(w, v)
				return
			}
			http.NotFound(w, r)
		}))
		t.Cleanup(s.Close)
		return s
	}
	withAgent, polled := load("12.5"), load("40")
	agentServer, polledServer := strings.TrimPrefix(withAgent.URL, "http://"), strings.TrimPrefix(polled.URL, "http://")
	smtp := smtptest.Start(t, "127.0.0.1:0")
	_, mailPort, _ := net.SplitHostPort(smtp.Addr)
	site := seedConfig(t)
	port, _ := strconv.Atoi(mailPort)
	site["simulationServers"] = []string{agentServer, polledServer}
	site["ssl"] = false
	site["mailServer"], site["mailServerPort"] = "127.0.0.1", port
	site["mailSender"], site["mailSenderPassword"] = smtp.User, smtp.Password
	siteJSON, _ := json.MarshalIndent(site, "", "  ")
	h.write("home/cyberbotics/webots-server/config/session/session.json", string(siteJSON), 0o644)
	// The original, from its guide's autostart entry, holding port 1999.
	h.write("home/cyberbotics/webots-server/session_server.py", original, 0o755)
	h.write("home/cyberbotics/.config/autostart/session_server.desktop",
		"[Desktop Entry]\nName=session_server\nExec=python /home/cyberbotics/webots-server/session_server.py /home/cyberbotics/webots-server/config/session/session.json\nType=Application\n", 0o644)
	// Outside the ephemeral range: a port 0 closed again may be any
	// outgoing connection's before Apache binds it.
	apache := "127.0.0.1:" + strconv.Itoa(testutil.FixedPorts(t, 1)[0])
	h.apache(apache)
	// The site as the original left it: its rules inline in the HTTPS
	// VirtualHost, as the seed's guide writes them.
	h.write("etc/apache2/sites-available/000-default-le-ssl.conf", "<VirtualHost "+apache+">\n    ServerName localhost\n    DocumentRoot /var/www/html\n"+
		originalApacheRules+"</VirtualHost>\n", 0o644)
	// The administrator's edits; Apache's as the README says: the
	// original's rules replaced by the Include (left before it, the
	// original's ^/monitor$ rule took the monitor's WebSocket).
	h.edit("/etc/simgate/agent.env", "sed -i 's|^SIMGATE_SERVER=.*|SIMGATE_SERVER="+agentServer+"|' \"$1\"\n")
	h.edit("/etc/apache2/sites-available/000-default-le-ssl.conf", `sed -i '/RewriteEngine on/,/"http:\/\/localhost:\$1\/\$2" \[P,L\]/d' "$1"
grep -q RewriteRule "$1" && exit 1
sed -i 's|^</VirtualHost>|    Include /etc/apache2/simgate.conf\n</VirtualHost>|' "$1"
`)

	var cmds []string
	for _, section := range []string{"Installing", "### Apache", "Migrating from the original"} {
		cmds = append(cmds, readmeCommands(t, section)...)
	}
	if len(cmds) < 12 {
		t.Fatalf("only %d commands in the README's setup sections: %q", len(cmds), cmds)
	}
	results := h.run(`python3 /home/cyberbotics/webots-server/session_server.py /home/cyberbotics/webots-server/config/session/session.json >/dev/null 2>&1 &
echo $! >"`+h.root+`/pids/original"
i=0
until curl -s -o /dev/null localhost:1999/ || [ $i -gt 200 ]; do i=$((i + 1)); sleep 0.05; done`, cmds...)
	for c, want := range map[string]string{
		"apache2ctl configtest": "Syntax OK",
		"curl -sf --retry 30 --retry-all-errors --retry-delay 1 localhost:1999/readyz":                     "ok",
		"curl -s localhost:1999/session":                                                                   "ws://",
		"curl -s localhost:1999/api/servers | jq -r '.servers[] | \"\\(.server) \\(.source) \\(.state)\"'": polledServer + " poll up",
	} {
		if r, ok := results[c]; !ok || !strings.Contains(r, want) {
			t.Errorf("%s: want %q in %q", c, want, r)
		}
	}

	// Visitors through Apache, as the Webots client asks; the agent's
	// first heartbeat (within a second of its start) took its server over.
	via := "http://" + apache
	testutil.WaitFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, body, err := get(via + "/api/servers")
		var doc struct{ Servers []apiServer }
		if err == nil {
			err = json.Unmarshal([]byte(body), &doc)
		}
		for _, s := range doc.Servers {
			if s.Server == agentServer && s.Source == "agent" && s.State == "up" {
				return nil
			}
		}
		return fmt.Errorf("the agent has not taken %s over: %v %s", agentServer, err, body)
	})
	testutil.WaitFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, body, err := get(via + "/session")
		if err != nil || (body != "ws://"+agentServer && body != "ws://"+polledServer) {
			return fmt.Errorf("/session through Apache: %q %v", body, err)
		}
		return nil
	})
	for path, want := range map[string]string{"/load": "", "/api/servers": `"source":"poll"`, "/monitor": "<html"} {
		resp, body, err := get(via + path)
		if err != nil || resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("%s through Apache: %v %v %.200q", path, err, resp, body)
		}
	}
	// The monitor page's live updates go through Apache (they fell back
	// to polling behind the original's rules).
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+apache+"/monitor", nil)
	if err != nil {
		t.Errorf("the monitor page's WebSocket through Apache: %v", err)
	} else {
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), agentServer) {
			t.Errorf("the monitor's first push through Apache: %v %.200q", err, msg)
		}
		ws.Close()
	}
	if log := h.log("simgate-coordinator"); strings.Contains(log, "level=ERROR") {
		t.Errorf("the coordinator logged an ERROR on a site's first day:\n%s", log)
	}
}

// original stands in for session_server.py: it holds port 1999 until the
// README's pkill stops it.
const original = `import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ws://the-original")
    def log_message(self, *a): pass
http.server.HTTPServer(("", 1999), H).serve_forever()
`
