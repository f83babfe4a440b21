package agentcmd

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// speaksHTTP asks a port what it speaks only when it does not greet first:
// a NATS server (INFO at once) gets nothing written to it, since anything
// but CONNECT is an authentication error in its log.
func TestSpeaksHTTP(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(web.Close)
	natsLike, wrote := greeter(t, "INFO {\"server_id\":\"x\"}\r\n")
	silent, _ := greeter(t, "")
	tests := []struct {
		name, url string
		want      bool
	}{
		{"the coordinator's HTTP port", strings.Replace(web.URL, "http://", "nats://", 1), true},
		{"a NATS server", "nats://" + natsLike, false},
		{"a silent port", "tls://" + silent, false},
		{"not a NATS URL", web.URL, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := speaksHTTP(tc.url); got != tc.want {
				t.Errorf("speaksHTTP(%s) = %v, want %v", tc.url, got, tc.want)
			}
		})
	}
	select {
	case b := <-wrote:
		if b != "" {
			t.Errorf("the NATS server was sent %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Error("the NATS-like connection was not closed")
	}
}

// greeter listens on loopback, sends greeting to each connection, and
// reports, once the client has closed it, what the client wrote ("" for
// nothing).
func greeter(t *testing.T, greeting string) (addr string, wrote <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, greeting)
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				ch <- line
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// An agent given the coordinator's HTTP port for NATS is told so whichever
// side gives up first: its own handshake timeout, or the HTTP server's
// header timeout closing the silent connection (EOF).
func TestConnectHintHTTPPort(t *testing.T) {
	web := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	web.Config.ReadHeaderTimeout = 2 * time.Second // longer than speaksHTTP waits for a greeting
	web.Start()
	t.Cleanup(web.Close)
	url := strings.Replace(web.URL, "http://", "tls://", 1)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"the agent's timeout", nats.ErrTimeout},
		{"the HTTP server's timeout", io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			what, fix := connectHint(tc.err, Options{Server: "127.0.0.1:2901"}, url)
			if !strings.Contains(what, "HTTP port") || !strings.Contains(fix, "nats.listen") {
				t.Errorf("connectHint(%v) = %q, %q; want the HTTP port named", tc.err, what, fix)
			}
		})
	}
	// The same errors from a port that is not HTTP say nothing of HTTP.
	silent, _ := greeter(t, "")
	if what, _ := connectHint(io.EOF, Options{}, "tls://"+silent); strings.Contains(what, "HTTP") {
		t.Errorf("a silent port was called HTTP: %q", what)
	}
}
