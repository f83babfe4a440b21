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
