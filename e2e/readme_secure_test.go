package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/simgate/simgate/internal/testutil"
)

// TestREADMESecureSetup: issue 32. The README's "secure two-machine
// setup" (Security), installed as it says and run by the units as
// installed: the NATS certificate from its openssl commands, session.json
// as deploy/session-secure.json.example with an nkey agent user, the
// agent's seed a root file of mode 600 handed to the agent's dynamic user
// by LoadCredential (systemctl edit), both services started. The agent,
// over TLS with its nkey, takes its server over; neither service logs an
// error. Both machines are this one (a readmeHost), session.example.org
// its loopback.
func TestREADMESecureSetup(t *testing.T) {
	readmeTools(t, "openssl", "setpriv")
	readmePortsFree(t)
	src := filepath.Join(t.TempDir(), "simgate")
	copyRepo(t, src)
	h := newReadmeHost(t, "the session host and sim1", src, "")
	hosts, err := os.ReadFile(filepath.Join(h.root, "etc", "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	h.write("etc/hosts", string(hosts)+"\n127.0.0.1 session.example.org\n", 0o644)

	// sim1's simulation server.
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "0") }))
	t.Cleanup(stub.Close)
	sim1 := strings.TrimPrefix(stub.URL, "http://")

	// Step 3's nkey, as `nk -gen user -pubout` makes one.
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	h.write("edits/agent.nk", string(seed)+"\n", 0o600)
	// Step 2: the example's keys, its servers and users made this site's.
	var cfg map[string]any
	data, err := os.ReadFile("../deploy/session-secure.json.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	delete(cfg, "localAgent")
	cfg["ssl"], cfg["portRewrite"] = false, false
	cfg["simulationServers"] = []string{sim1}
	for _, k := range []string{"administrator", "mailServer", "mailServerPort", "mailSender", "mailSenderPassword"} {
		delete(cfg, k) // no mail server here
	}
	nats := cfg["nats"].(map[string]any)
	nats["users"] = []map[string]any{{"user": "sim1", "nkey": pub, "role": "agent", "servers": []string{sim1}}}
	secure, _ := json.MarshalIndent(cfg, "", "  ")
	h.write("edits/session-secure.json", string(secure), 0o600)
	// `systemctl edit simgate-agent`: the README's lines.
	h.edit("override.conf", "printf '[Service]\\nLoadCredential=agent.nk:/etc/simgate/agent.nk\\n' >\"$1\"\n")

	cmds := readmeCommands(t, "Installing")
	for _, b := range readmeBlocks(t, "Security") {
		if strings.Contains(strings.Join(b, "\n"), "openssl req -x509") {
			cmds = append(cmds, strings.Join(b, "\n")) // step 1, one shell: it begins with a cd
		}
	}
	edits := filepath.Join(h.root, "edits")
	cmds = append(cmds,
		// Step 2, keeping the file as install.sh made it (640 root:simgate).
		"cat "+edits+"/session-secure.json >/etc/simgate/session.json && stat -c '%a %U:%G' /etc/simgate/session.json",
		// Step 3: the seed (600, root), agent.env (600), the credential.
		"install -m 600 -o root "+edits+"/agent.nk /etc/simgate/agent.nk",
		"printf 'SIMGATE_SERVER="+sim1+"\\nSIMGATE_NATS=tls://session.example.org:4222\\nSIMGATE_CA=/etc/simgate/nats-ca.pem\\n' >/etc/simgate/agent.env && chmod 600 /etc/simgate/agent.env",
		"systemctl edit simgate-agent",
		"systemctl enable --now simgate-coordinator",
		"curl -sf --retry 30 --retry-all-errors --retry-delay 1 localhost:1999/healthz",
		"systemctl enable --now simgate-agent",
	)
	results := h.run("", cmds...)
	if r := results["cat "+edits+"/session-secure.json >/etc/simgate/session.json && stat -c '%a %U:%G' /etc/simgate/session.json"]; !strings.Contains(r, "640 root:simgate") {
		t.Errorf("session.json is not as install.sh made it: %q", r)
	}

	// The agent, as its dynamic user, with the seed from its credential,
	// over TLS: its server up from its heartbeats.
	testutil.WaitFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		_, body, err := get("http://127.0.0.1:1999/api/servers")
		var doc struct{ Servers []apiServer }
		if err == nil {
			err = json.Unmarshal([]byte(body), &doc)
		}
		for _, s := range doc.Servers {
			if s.Server == sim1 && s.Source == "agent" && s.State == "up" {
				return nil
			}
		}
		return fmt.Errorf("the agent has not taken %s over: %v %s", sim1, err, body)
	})
	for _, unit := range []string{"simgate-coordinator", "simgate-agent"} {
		if log := h.log(unit); strings.Contains(log, "level=ERROR") {
			t.Errorf("%s logged an ERROR:\n%s", unit, log)
		}
	}
	log := h.log("simgate-agent")
	if !strings.Contains(log, "tls://session.example.org:4222") {
		t.Errorf("the agent's log does not name its TLS connection:\n%s", log)
	}
	t.Logf("the agent's log:\n%s", log)
	// It ran as its dynamic user, with the seed copied for that user only.
	cred, err := os.Stat(filepath.Join(h.root, "credentials", "simgate-agent", "agent.nk"))
	if err != nil || cred.Mode().Perm() != 0o400 {
		t.Errorf("the agent's credential: %v %v", cred, err)
	}
}
