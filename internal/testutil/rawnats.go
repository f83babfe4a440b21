package testutil

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RawNATS is a NATS client that writes what it is given: nats.go writes
// headers as the protocol says, an attacker writes what it likes.
type RawNATS struct {
	t  testing.TB
	c  net.Conn
	rd *bufio.Reader
	n  int
}

// DialRawNATS connects to addr (host:port) as user with password and
// subscribes to its own inbox.
func DialRawNATS(t testing.TB, addr, user, password string) *RawNATS {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &RawNATS{t: t, c: c, rd: bufio.NewReader(c)}
	if _, err := r.rd.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT {\"user\":%q,\"pass\":%q,\"headers\":true,\"no_responders\":true,\"verbose\":false,\"protocol\":1}\r\nSUB _INBOX.raw.* 1\r\nPING\r\n", user, password)
	for {
		line, err := r.rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "PONG") {
			return r
		}
		if strings.HasPrefix(line, "-ERR") {
			t.Fatal(line)
		}
	}
}

// Request publishes payload on subject with the header block headers
// (its lines as given, each with its own line ending) and returns the
// reply's headers and payload as they came.
func (r *RawNATS) Request(subject, headers, payload string) string {
	r.t.Helper()
	r.n++
	hdr := "NATS/1.0\r\n" + headers + "\r\n"
	fmt.Fprintf(r.c, "HPUB %s _INBOX.raw.%d %d %d\r\n%s%s\r\n", subject, r.n, len(hdr), len(hdr)+len(payload), hdr, payload)
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := r.rd.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reply to %s: %v", subject, err)
		}
		f := strings.Fields(line)
		if len(f) == 0 || (f[0] != "HMSG" && f[0] != "MSG") {
			continue
		}
		size, _ := strconv.Atoi(f[len(f)-1])
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r.rd, buf); err != nil {
			r.t.Fatal(err)
		}
		return string(buf[:size])
	}
}
