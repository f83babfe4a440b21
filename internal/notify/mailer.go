package notify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/simgate/simgate/internal/domain"
)

// MailerOptions is a Mailer as the coordinator makes it from the site's
// configuration.
type MailerOptions struct {
	SMTP *SMTP
	// Policy and Queue are the policy's and the queue's settings; NewMailer
	// fills in what joins them (Send, Transport, Store, Fence, Logger).
	Policy PolicyOptions
	Queue  QueueOptions
	Store  Store // the coordinators' shared state
	Fence  Fence // only while it holds does this coordinator send
	Grace  time.Duration
	// LegacyDir is where earlier versions kept pending-mail.json and
	// mail-state.json, imported into Store once.
	LegacyDir string
	Logger    *slog.Logger
	Farm      func() []Now // the servers' states now
}

// Mailer is the mail path from a state change to SMTP: the policy decides
// what is mailed, the queue sends it exactly once for the cluster. A nil
// Mailer (notifications off) accepts every call and does nothing.
type Mailer struct {
	policy *Policy
	queue  *Queue
	grace  time.Duration
	log    *slog.Logger
	store  Store
	legacy FileStore // files of earlier versions, imported once
	smtp   *SMTP
	fence  Fence
	farm   func() []Now
	// trouble is why mail cannot be delivered now ("" when it can, or
	// nothing says otherwise): the start's check and each delivery set it.
	trouble atomic.Pointer[string]
}

// NewMailer joins the policy and the queue over o.Store; every member runs
// the policy on the same changes, and only the one o.Fence lets sends.
func NewMailer(o MailerOptions) (*Mailer, error) {
	m := &Mailer{smtp: o.SMTP, grace: o.Grace, log: o.Logger, store: o.Store, fence: o.Fence, farm: o.Farm}
	logger := o.Logger.With("component", "mail")
	qo := o.Queue
	qo.Transport, qo.Logger, qo.Store, qo.Fence = delivering{Transport: o.SMTP, m: m}, logger, o.Store, o.Fence
	q, err := NewQueue(qo)
	if err != nil {
		return nil, err
	}
	m.queue = q
	po := o.Policy
	po.Send = func(subject, body string) {
		if o.Fence.Holds() {
			q.Enqueue(subject, body)
		}
	}
	po.Store, po.Fence, po.Logger = o.Store, o.Fence, logger
	m.policy = NewPolicy(po)
	m.legacy = FileStore{Spool: filepath.Join(o.LegacyDir, "pending-mail.json"),
		StateFile: filepath.Join(o.LegacyDir, "mail-state.json"), Logger: logger}
	return m, nil
}

// delivering records each delivery's outcome in the mailer's trouble.
type delivering struct {
	Transport
	m *Mailer
}

func (d delivering) Send(ctx context.Context, m Mail) error {
	err := d.Transport.Send(ctx, m)
	d.m.note(err)
	return err
}

// note keeps why mail cannot be delivered, with what fixes it.
func (m *Mailer) note(err error) {
	why := ""
	if err != nil {
		why = "mail cannot be delivered to " + net.JoinHostPort(m.smtp.Host, strconv.Itoa(m.smtp.Port)) + ": " + err.Error()
		if fix := mailFix(err); fix != "" {
			why += " (" + fix + ")"
		}
	}
	m.trouble.Store(&why)
}

// mailFix names the key that fixes a mail server's error, "" if none does.
func mailFix(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "certificate") {
		return "its TLS certificate does not verify: set mail.caFile to the CA that signed it, or mail.verifyCertificate to false to accept it as the original session server did"
	}
	if strings.Contains(err.Error(), "AUTH") {
		return "check mailSenderUser and mailSenderPassword"
	}
	return ""
}

// Alerts says what an operator must know of mail (summary.alerts).
func (m *Mailer) Alerts() []string {
	if m == nil {
		return nil
	}
	if why := m.trouble.Load(); why != nil && *why != "" {
		return []string{*why}
	}
	return nil
}

// Check tries the mail server once at start, as far as a mail goes before
// AUTH: a certificate that does not verify is said at once (one ERROR line
// naming the server and the keys that fix it), not at the first failure.
func (m *Mailer) Check(ctx context.Context) {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := m.smtp.Check(ctx)
	if err == nil {
		m.note(nil)
		m.log.Info("the mail server answers", "server", m.smtp.Host, "port", m.smtp.Port)
		return
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return // stopping
	}
	m.note(err)
	if fix := mailFix(err); strings.HasPrefix(fix, "its TLS certificate") {
		m.log.Error("mail cannot be delivered: the mail server's TLS certificate does not verify", "server", m.smtp.Host,
			"port", m.smtp.Port, "error", err, "fix", "set mail.caFile to the CA that signed it, or mail.verifyCertificate to false to accept it as the original session server did")
		return
	}
	m.log.Warn("the mail server does not answer as it should now; mails will be retried", "server", m.smtp.Host,
		"port", m.smtp.Port, "error", err)
}

// importLegacy moves the files earlier versions kept (pending-mail.json,
// mail-state.json) into the state bucket, once it can be reached, and
// renames them .imported; it reports whether that is done.
func (m *Mailer) importLegacy() bool {
	_, errS := os.Stat(m.legacy.Spool)
	_, errH := os.Stat(m.legacy.StateFile)
	if os.IsNotExist(errS) && os.IsNotExist(errH) {
		return true
	}
	mails, _ := m.legacy.LoadMails()
	holds, _ := m.legacy.LoadHolds()
	if len(mails) > 0 {
		kept, err := m.store.LoadMails()
		if err != nil {
			return false
		}
		if err := m.store.SaveMails(append(kept, mails...)); err != nil {
			return false
		}
	}
	if len(holds) > 0 {
		if err := m.store.SaveHolds(holds); err != nil {
			return false
		}
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	for _, f := range []string{m.legacy.Spool, m.legacy.StateFile} {
		if _, err := os.Stat(f); err == nil {
			_ = os.Rename(f, f+".imported-"+stamp)
		}
	}
	m.log.Info("pending mails and hold-off state of an earlier version moved into the state bucket",
		"mails", len(mails), "servers", len(holds))
	return true
}

// Change is a server's state change, as the registry made it.
func (m *Mailer) Change(c domain.Change) {
	if m != nil {
		m.policy.Change(c)
	}
}

// Load is a server's report: its load moves a "full" or "available" mail.
func (m *Mailer) Load(server string, status domain.Status, load float64, v domain.Vector, at time.Time) {
	if m != nil {
		m.policy.Load(server, status, load, v, at)
	}
}

// Run sends digests as hold-off windows end, and reports once the
// configured servers never heard from within the start-up grace period.
func (m *Mailer) Run(ctx context.Context) {
	if m == nil {
		return
	}
	grace := time.NewTimer(m.grace)
	defer grace.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	imported := m.importLegacy()
	leading := false
	follow := func(now time.Time) {
		switch l := m.fence.Holds(); {
		case l && !leading:
			// Level-triggered: the new leader mails the difference between
			// what was told and what is true now.
			leading = m.policy.TakeLead(m.farm(), now)
		case !l && leading:
			m.policy.LeadLost()
			leading = false
		}
	}
	follow(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.policy.Saves():
			m.policy.Save()
		case now := <-tick.C:
			if !imported {
				imported = m.importLegacy()
			}
			follow(now)
			m.policy.Tick(now)
		case now := <-grace.C:
			for _, v := range m.farm() {
				switch v.State {
				case domain.Unknown:
					m.log.Warn("server never heard from since start", "server", v.Server, "grace", m.grace)
					m.policy.NotResponding(v.Server, fmt.Sprintf("no heartbeat from its agent in the %s since the session server started", m.grace), now)
				case domain.Down:
					if !v.Heard || !v.ServiceDown {
						continue // a planned stop, or a loss mailed when it happened
					}
					m.log.Warn("server not up since start", "server", v.Server, "grace", m.grace, "reason", v.Reason)
					m.policy.NotResponding(v.Server, fmt.Sprintf("%s, for the %s since the session server started", v.Reason, m.grace), now)
				}
			}
		}
	}
}

// Close stops the queue.
func (m *Mailer) Close() {
	if m != nil {
		m.queue.Close()
	}
}

// CheckServer connects to the mail server as a mail would, up to AUTH,
// and says what it found (coordinator -check -mail); ok is false when the
// mail server cannot be used as configured.
func CheckServer(ctx context.Context, s *SMTP) (line string, ok bool) {
	line, err := s.CheckTLS(ctx)
	if err != nil {
		fix := "check mailServer and mailServerPort, and the firewall"
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		var host x509.HostnameError
		switch {
		case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host):
			fix = "its certificate does not verify: give its CA in mail.caFile, or set mail.verifyCertificate false (the original verified nothing)"
		}
		return err.Error() + "; " + fix, false
	}
	return line, true
}
