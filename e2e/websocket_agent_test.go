package e2e

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/simgate/simgate/internal/testutil"
)

// TestAgentOverWebSocket: PROTOCOL §2, agents through Apache on 443. A real
// agent reaches the coordinator through NATS's WebSocket listener, with a
// path as Apache proxies it (wss://session-host/nats → ws://127.0.0.1:port/nats).
func TestAgentOverWebSocket(t *testing.T) {
	const server = "127.0.0.1/2601"
	f := startFarm(t, map[string]any{
		"simulationServers": []string{server},
		"nats": map[string]any{"listen": "127.0.0.1:0", "websocket": map[string]any{"listen": "127.0.0.1:0"},
			"users": []map[string]any{{"user": "ws-agent", "password": "ws-agent-secret", "role": "agent", "servers": []string{server}}}},
	})
	ws := f.bound.NATSWebsocketURL
	if !strings.HasPrefix(ws, "ws://") {
		t.Fatalf("listen file: websocket URL %q", ws)
	}
	// Apache hands this listener to the Internet: nobody gets in without
	// credentials, and no browser page (an Origin) gets in at all.
	if nc, err := nats.Connect(ws+"/nats", nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Error("an anonymous client connected over the WebSocket listener")
	}
	hdr := http.Header{"Origin": []string{"https://evil.example"}}
	if c, resp, err := websocket.DefaultDialer.Dial(ws+"/nats", hdr); err == nil {
		c.Close()
		t.Error("a browser Origin was let onto NATS's WebSocket listener")
	} else if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a browser Origin: %v (%v), want 403", err, resp)
	}
	a := start(t, f.agent, "-nats", ws+"/nats", "-server", server, "-interval", "200ms", "-probe", "off",
		"-user", "ws-agent", "-password", "ws-agent-secret")
	f.waitState(t, server, 10*time.Second, "up", "full")
	if s := f.servers(t)[server]; s.Source != "agent" {
		t.Errorf("source %q, want agent", s.Source)
	}
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(a.out.String(), "the coordinator takes this agent's heartbeats") {
			return errString("the agent did not log the coordinator's acknowledgement")
		}
		return nil
	})
	// Its connection closing over WebSocket is seen at once, as over TCP.
	_ = a.cmd.Process.Kill()
	f.waitState(t, server, 2*time.Second, "down")
}

// TestAgentToldOfItsMistakes: a newcomer's agent says what is wrong: a
// -server spelled otherwise than in simulationServers (with the spelling to
// use), and URLs that cannot work, refused at start.
func TestAgentToldOfItsMistakes(t *testing.T) {
	f := startFarm(t, map[string]any{"simulationServers": []string{"127.0.0.1/3118"}})
	a := start(t, f.agent, "-nats", f.nats, "-server", "127.0.0.1:3118", "-interval", "200ms", "-probe", "off")
	testutil.WaitFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !strings.Contains(a.out.String(), `is it \"127.0.0.1/3118\"?`) && !strings.Contains(a.out.String(), `is it "127.0.0.1/3118"?`) {
			return errString("the agent did not say the configured spelling")
		}
		return nil
	})
	for _, args := range [][]string{
		{"-nats", "htp://127.0.0.1:4222", "-server", "127.0.0.1/3117"},
		{"-probe", "localhost:2000/load", "-server", "127.0.0.1/3117"},
	} {
		out, err := exec.Command(f.agent, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), args[0]) {
			t.Errorf("agent %v: %v, output %q; want exit 2 naming %s", args, err, out, args[0])
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestAgentOverWebSocketWithTLS: issue 32. With nats.tls set, the
// WebSocket listener on loopback stays plain: the local Apache terminates
// TLS for wss://host/nats and proxies ws:// to it, as the README's snippet
// does. An agent over that path gets in.
func TestAgentOverWebSocketWithTLS(t *testing.T) {
	const server = "127.0.0.1/2602"
	cert, key := testutil.TLSFiles(t)
	f := startFarm(t, map[string]any{
		"simulationServers": []string{server},
		"nats": map[string]any{"listen": "127.0.0.1:0", "websocket": map[string]any{"listen": "127.0.0.1:0"},
			"tls":   map[string]any{"cert": cert, "key": key},
			"users": []map[string]any{{"user": "ws-agent", "password": "ws-agent-secret", "role": "agent", "servers": []string{server}}}},
	})
	if !strings.HasPrefix(f.nats, "tls://") {
		t.Fatalf("the TCP listener %s: want tls://", f.nats)
	}
	ws := f.bound.NATSWebsocketURL
	if !strings.HasPrefix(ws, "ws://") {
		t.Fatalf("listen file: websocket URL %q, want ws:// on loopback", ws)
	}
	start(t, f.agent, "-nats", ws+"/nats", "-server", server, "-interval", "200ms", "-probe", "off",
		"-user", "ws-agent", "-password", "ws-agent-secret")
	f.waitState(t, server, 10*time.Second, "up", "full")
}
