// Package smtptest runs a real SMTP server (go-smtp) for tests: STARTTLS
// with a throw-away certificate, AUTH PLAIN with one user, and a record of
// every message delivered.
package smtptest

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/simgate/simgate/internal/testutil"
)

// Message is one delivered mail.
type Message struct {
	From string
	To   []string
	Data string
	User string // who authenticated
}

// Server is a running SMTP server.
type Server struct {
	Addr     string
	CAPEM    []byte // the certificate to trust
	User     string
	Password string
	srv      *smtp.Server
	gate     *gate
	mu       sync.Mutex // guards msgs
	msgs     []Message
	arrived  chan struct{}
	hang     atomic.Pointer[hang] // the next DATA held (HangNext), or nil
}

// hang is one held DATA: entered when a client is inside it, release to
// end it with a temporary failure.
type hang struct {
	entered, release chan struct{}
}

// Start runs a server on addr ("127.0.0.1:0" for any port) until the test ends.
func Start(t testing.TB, addr string) *Server {
	t.Helper()
	certOnce.Do(func() { testCert, testCA = selfSigned(t) })
	cert, caPEM := testCert, testCA
	s := &Server{CAPEM: caPEM, User: "sender@example.org", Password: "s3cret", arrived: make(chan struct{}, 100)}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	s.gate = &gate{Listener: ln}
	go func() { _ = s.srv.Serve(s.gate) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// Close stops the server.
func (s *Server) Close() { _ = s.srv.Close() }

// SetDown starts (true) or ends an outage: meanwhile every connection is
// closed before the greeting, so each attempt fails at once, and the port
// stays held for the server's return (no other process can take it).
func (s *Server) SetDown(down bool) { s.gate.down.Store(down) }

// HangNext holds the next message's DATA, as a hung mail server does: the
// client has sent the whole message and waits for an answer that comes
// only when the returned release is called, and is then a temporary
// failure (451: the message was not taken). Entered fires when a client
// is inside the held DATA. Other sessions meanwhile are served as usual.
func (s *Server) HangNext() (entered <-chan struct{}, release func()) {
	h := &hang{entered: make(chan struct{}), release: make(chan struct{})}
	s.hang.Store(h)
	var once sync.Once
	return h.entered, func() { once.Do(func() { close(h.release) }) }
}

// gate is the server's listener, closing connections during an outage.
type gate struct {
	net.Listener
	down atomic.Bool
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil || !g.down.Load() {
			return c, err
		}
		_ = c.Close()
	}
}

// Messages returns what was delivered so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Arrived fires once per delivered message.
func (s *Server) Arrived() <-chan struct{} { return s.arrived }

// One certificate for every server of a test process, so that a client set
// up before a server starts trusts it.
var (
	certOnce sync.Once
	testCert tls.Certificate
	testCA   []byte
)

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s    *Server
	user string
	msg  Message
}

func (se *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (se *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != se.s.User || pass != se.s.Password {
			return errors.New("invalid credentials")
		}
		se.user = user
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.user == "" {
		return smtp.ErrAuthRequired
	}
	se.msg = Message{From: from, User: se.user}
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	se.msg.To = append(se.msg.To, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if h := se.s.hang.Swap(nil); h != nil {
		close(h.entered)
		<-h.release
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "timed out; message not taken"}
	}
	se.msg.Data = string(b)
	se.s.mu.Lock()
	se.s.msgs = append(se.s.msgs, se.msg)
	se.s.mu.Unlock()
	se.s.arrived <- struct{}{}
	return nil
}

func (se *session) Reset()        { se.msg = Message{} }
func (se *session) Logout() error { return nil }

func selfSigned(t testing.TB) (tls.Certificate, []byte) {
	t.Helper()
	certPEM, keyPEM := testutil.SelfSigned(t, "simgate test SMTP")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM
}
