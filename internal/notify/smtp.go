package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/gomail.v2"
)

// stepTimeout bounds every SMTP step (connect, greeting, STARTTLS, AUTH,
// MAIL, RCPT, DATA, QUIT): a stalled mail server never holds a mail forever.
const stepTimeout = 15 * time.Second

// SMTP sends mails as the original did: From "Simulation Server <sender>",
// To "Administrator <administrator>", with a Message-ID that retries keep. gomail composes the message; the
// transport below sets a deadline on every step, which gomail's dialer cannot.
type SMTP struct {
	Host     string
	Port     int
	User     string
	Password string // when set: STARTTLS (or implicit TLS on 465) and AUTH
	From, To string
	TLS      *tls.Config // nil: system roots, server name = Host
}

// Send delivers m.
func (s *SMTP) Send(ctx context.Context, m Mail) error {
	// Unencoded: quoted-printable would wrap the original's opening line,
	// which administrators' filters match as it stands.
	msg := gomail.NewMessage(gomail.SetEncoding(gomail.Unencoded))
	// Written as the original wrote them, unquoted: filters may match them.
	msg.SetHeader("From", "Simulation Server <"+s.From+">")
	msg.SetHeader("To", "Administrator <"+s.To+">")
	msg.SetHeader("Subject", m.Subject)
	msg.SetDateHeader("Date", m.Created)
	if m.ID != "" {
		domain := "simgate.invalid"
		if _, d, ok := strings.Cut(s.From, "@"); ok && d != "" {
			domain = d
		}
		msg.SetHeader("Message-ID", "<simgate."+m.ID+"@"+domain+">")
	}
	msg.SetBody("text/plain", m.Body)
	return gomail.Send(gomail.SendFunc(func(from string, to []string, w io.WriterTo) error {
		return s.deliver(ctx, from, to, w)
	}), msg)
}

func (s *SMTP) tlsConfig() *tls.Config {
	if s.TLS != nil {
		c := s.TLS.Clone()
		if c.ServerName == "" {
			c.ServerName = s.Host
		}
		return c
	}
	return &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
}

// Check connects to the mail server and goes as far as a mail would
// before AUTH (greeting, EHLO, STARTTLS or implicit TLS, with the
// certificate checked as for a mail), then quits: what the start says of
// a mail server whose certificate does not verify, before any mail waits.
func (s *SMTP) Check(ctx context.Context) error {
	conn, client, err := s.open(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer client.Close()
	_ = conn.SetDeadline(time.Now().Add(stepTimeout))
	return client.Quit()
}

// CheckTLS connects to the mail server as Check does and says what its
// TLS is: the session secured (implicit TLS on 465, STARTTLS when offered,
// whether or not a password is to be sent) and whether the certificate
// verifies as a mail would check it. An error: not reachable, or its TLS
// failed (a certificate that does not verify, the commonest first-day
// mail failure).
func (s *SMTP) CheckTLS(ctx context.Context) (string, error) {
	conn, client, err := s.open(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	defer client.Close()
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	state, secured := client.TLSConnectionState()
	if !secured {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			return addr + " answers; it offers no TLS (STARTTLS): mails go in clear, and a password would not be sent", nil
		}
		_ = conn.SetDeadline(time.Now().Add(stepTimeout))
		if err := client.StartTLS(s.tlsConfig()); err != nil {
			return "", fmt.Errorf("%s: STARTTLS: %w", addr, err)
		}
		state, _ = client.TLSConnectionState()
	}
	cn := ""
	if len(state.PeerCertificates) > 0 {
		cn = " (" + state.PeerCertificates[0].Subject.CommonName + ")"
	}
	_ = conn.SetDeadline(time.Now().Add(stepTimeout))
	_ = client.Quit()
	if s.tlsConfig().InsecureSkipVerify {
		return addr + " answers over TLS; its certificate" + cn + " is not verified (mail.verifyCertificate false, or a mail server on this machine)", nil
	}
	return addr + " answers over TLS; its certificate" + cn + " verifies", nil
}

// open connects and greets, and secures the session when a password is
// to be sent: up to, not including, AUTH.
func (s *SMTP) open(ctx context.Context) (net.Conn, *smtp.Client, error) {
	addr := net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	d := &net.Dialer{Timeout: stepTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	client, err := s.greet(ctx, conn, addr)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, client, nil
}

func (s *SMTP) greet(ctx context.Context, conn net.Conn, addr string) (*smtp.Client, error) {
	step := func() { _ = conn.SetDeadline(time.Now().Add(stepTimeout)) }
	step()
	var c net.Conn = conn
	if s.Port == 465 { // implicit TLS
		tc := tls.Client(conn, s.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS with %s: %w", addr, err)
		}
		c = tc
	}
	client, err := smtp.NewClient(c, s.Host)
	if err != nil {
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	step()
	if err := client.Hello("localhost"); err != nil {
		client.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	if s.Password != "" && s.Port != 465 {
		if ok, _ := client.Extension("STARTTLS"); !ok {
			client.Close()
			return nil, fmt.Errorf("%s offers no STARTTLS; refusing to send the password in clear", addr)
		}
		step()
		if err := client.StartTLS(s.tlsConfig()); err != nil {
			client.Close()
			return nil, fmt.Errorf("STARTTLS: %w", err)
		}
	}
	return client, nil
}

func (s *SMTP) deliver(ctx context.Context, from string, to []string, w io.WriterTo) error {
	conn, client, err := s.open(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer client.Close()
	step := func() { _ = conn.SetDeadline(time.Now().Add(stepTimeout)) }
	if s.Password != "" {
		step()
		if err := client.Auth(smtp.PlainAuth("", s.User, s.Password, s.Host)); err != nil {
			return fmt.Errorf("AUTH as %s: %w", s.User, err)
		}
	}
	step()
	if err := client.Mail(from); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, rcpt := range to {
		step()
		if err := client.Rcpt(rcpt); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", rcpt, err)
		}
	}
	step()
	wc, err := client.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.WriteTo(wc); err != nil {
		return fmt.Errorf("writing the message: %w", err)
	}
	step()
	if err := wc.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	step()
	return client.Quit()
}

// TLSFor is the TLS a mail server's certificate is checked by: the
// system's roots, and caFile's certificates when set (mail.caFile); with
// verify false (mail.verifyCertificate), none is checked, as the
// original did (Python's starttls() verifies nothing). nil: the defaults.
func TLSFor(caFile string, verify bool) (*tls.Config, error) {
	var cfg *tls.Config
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("mail.caFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mail.caFile %s holds no PEM certificate", caFile)
		}
		cfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if !verify {
		cfg = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} // mail.verifyCertificate
	}
	return cfg, nil
}
