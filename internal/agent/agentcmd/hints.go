package agentcmd

import (
	"bufio"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// connectHint says what failed in a connection to the coordinator and what
// to change: a refused login is not a firewall, a certificate that does not
// verify wants -ca, the coordinator's HTTP port is not its NATS port.
func connectHint(err error, o Options, last string) (what, fix string) {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	msg := ""
	if err != nil {
		msg = strings.ToLower(err.Error())
	}
	switch {
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(msg, "authorization violation") ||
		strings.Contains(msg, "authentication"):
		return "the coordinator refused this agent's credentials, or this user's right to speak for " + o.Server,
			"check -user and -password (" + EnvName("user") + ", " + EnvName("password") + "), -token (" + EnvName("token") +
				") or -nkey (" + EnvName("nkey") + ") against the coordinator's nats.users; " + serverHint(o.Server) +
				"; after 5 failures in a minute the coordinator makes a user wait up to a minute"
	case errors.As(err, &unknownCA) || strings.Contains(msg, "certificate signed by unknown authority"):
		return "the coordinator's TLS certificate does not verify",
			"give the CA that signed it with -ca (" + EnvName("ca") + "), for tls:// and wss:// URLs alike"
	case errors.As(err, &hostname) || strings.Contains(msg, "certificate is valid for"):
		return "the coordinator's TLS certificate is for another name",
			"use the host name the certificate names in -nats (" + EnvName("nats") + ")"
	case strings.Contains(msg, "tls: first record does not look like a tls handshake"):
		return "the coordinator does not speak TLS there", "use nats:// (or ws://), or set nats.tls on the coordinator"
	case strings.Contains(msg, "secure connection required"):
		return "the coordinator requires TLS", "use tls:// (or wss://) in -nats (" + EnvName("nats") + "), with -ca for a private CA"
	}
	// The HTTP port given for NATS accepts the connection and never greets:
	// the handshake times out, or the HTTP server, waiting no longer for a
	// request than the agent waits for INFO (both 5 s), closes it first
	// (EOF). Only then is the port asked what it speaks.
	if last != "" && (strings.Contains(msg, "timeout") || errors.Is(err, io.EOF)) && speaksHTTP(last) {
		return "that is an HTTP port, not the coordinator's NATS port",
			"-nats (" + EnvName("nats") + ") names the coordinator's nats.listen port (4222 by default), not its HTTP port (1999); through Apache use wss://host/nats"
	}
	return "cannot reach the coordinator's NATS server",
		"-nats (or " + EnvName("nats") + "), the coordinator's nats.listen or nats.websocket.listen, and the firewall between them"
}

// lastURL is the URL the connection last tried, else the first of list.
func lastURL(nc *nats.Conn, list string) string {
	if nc != nil {
		if u := nc.ConnectedUrl(); u != "" {
			return u
		}
	}
	first, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(first)
}

// speaksHTTP reports whether the nats:// or tls:// URL's port answers an
// HTTP request: -nats given the coordinator's HTTP port times out in the
// NATS handshake, which says nothing by itself. A NATS server greets first
// (INFO): then nothing is sent to it, since anything but CONNECT there is
// an authentication error in its log.
func speaksHTTP(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Port() == "" {
		return false
	}
	c, err := net.DialTimeout("tcp", u.Host, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if greeting, err := r.Peek(4); err == nil || len(greeting) > 0 {
		return false // it spoke first: NATS (INFO), or something else that is not HTTP
	}
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("HEAD / HTTP/1.0\r\n\r\n")); err != nil {
		return false
	}
	line, _ := r.ReadString('\n')
	return strings.HasPrefix(line, "HTTP/")
}
