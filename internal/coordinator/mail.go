package coordinator

import (
	"context"
	"crypto/tls"
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

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/cluster"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/metrics"
	"github.com/simgate/simgate/internal/notify"
)

// mailer joins the mail policy and queue to the coordinator; a nil mailer
// (notifications off) accepts every call and does nothing.
type mailer struct {
	policy *notify.Policy
	queue  *notify.Queue
	grace  time.Duration
	log    *slog.Logger
	store  notify.Store
	legacy notify.FileStore // files of earlier versions, imported once
	smtp   *notify.SMTP
	lead   *cluster.Lead
	// trouble is why mail cannot be delivered now ("" when it can, or
	// nothing says otherwise): the start's check and each delivery set it.
	trouble atomic.Pointer[string]
}

// delivering records each delivery's outcome in the mailer's trouble.
type delivering struct {
	notify.Transport
	m *mailer
}

func (d delivering) Send(ctx context.Context, m notify.Mail) error {
	err := d.Transport.Send(ctx, m)
	d.m.note(err)
	return err
}

// note keeps why mail cannot be delivered, with what fixes it.
func (m *mailer) note(err error) {
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

// alerts says what an operator must know of mail (summary.alerts).
func (m *mailer) alerts() []string {
	if m == nil {
		return nil
	}
	if why := m.trouble.Load(); why != nil && *why != "" {
		return []string{*why}
	}
	return nil
}

// check tries the mail server once at start, as far as a mail goes before
// AUTH: a certificate that does not verify is said at once (one ERROR line
// naming the server and the keys that fix it), not at the first failure.
func (m *mailer) check(ctx context.Context) {
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

// mailSMTP is the mail server as the configuration gives it, with the TLS
// its certificate is checked by.
func mailSMTP(cfg config.Config) (*notify.SMTP, error) {
	var tlsCfg *tls.Config
	if cfg.Mail.CAFile != "" {
		pem, err := os.ReadFile(cfg.Mail.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mail.caFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mail.caFile %s holds no PEM certificate", cfg.Mail.CAFile)
		}
		tlsCfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if !cfg.VerifyMailCertificate() {
		// As the original did (Python's starttls() verifies nothing): by
		// default only for a mail server on this machine.
		tlsCfg = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} // mail.verifyCertificate
	}
	return &notify.SMTP{Host: cfg.MailServer, Port: cfg.MailServerPort, User: cfg.MailSenderUser,
		Password: cfg.MailSenderPassword, From: cfg.MailSender, To: cfg.Administrator, TLS: tlsCfg}, nil
}

// CheckMail connects to the configured mail server as a mail would, up to
// AUTH, and says what it found (coordinator -check -mail); ok is false
// when the mail server cannot be used as configured.
func CheckMail(ctx context.Context, cfg config.Config) (line string, ok bool) {
	if why := cfg.MailOff(); why != "" {
		return "e-mail notifications are off: " + why, true
	}
	smtp, err := mailSMTP(cfg)
	if err != nil {
		return err.Error(), false
	}
	line, err = smtp.CheckTLS(ctx)
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

// startMailer starts the mail queue and policy over store, the
// coordinators' shared state; only while it holds the lead does this
// coordinator send (every member runs the policy on the same changes).
func startMailer(cfg config.Config, log *slog.Logger, m *metrics.Metrics, store notify.Store, lead *cluster.Lead) (*mailer, error) {
	if why := cfg.MailOff(); why != "" {
		log.Info("e-mail notifications are off: " + why)
		return nil, nil
	}
	smtp, err := mailSMTP(cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.VerifyMailCertificate() {
		log.Info("the mail server's TLS certificate is not verified", "server", cfg.MailServer,
			"why", "a mail server on this machine, or mail.verifyCertificate false")
	}
	mm := &mailer{smtp: smtp}
	q, err := notify.NewQueue(notify.QueueOptions{
		Transport:   delivering{Transport: mm.smtp, m: mm},
		Logger:      log.With("component", "mail"),
		Store:       store,
		Fence:       lead,
		RetryMax:    cfg.Mail.RetryMax,
		GiveUp:      cfg.Mail.GiveUp,
		OnSent:      m.Mails.WithLabelValues("sent").Inc,
		OnFailed:    m.Mails.WithLabelValues("failed").Inc,
		OnAbandoned: m.Mails.WithLabelValues("abandoned").Inc,
		OnPending:   func(n int) { m.MailsPending.Set(float64(n)) },
	})
	if err != nil {
		return nil, err
	}
	log.Info("e-mail notifications on", "administrator", cfg.Administrator, "server", cfg.MailServer,
		"port", cfg.MailServerPort, "auth", cfg.MailSenderPassword != "")
	send := func(subject, body string) {
		if lead.Holds() {
			q.Enqueue(subject, body)
		}
	}
	mm.queue, mm.grace, mm.log, mm.store, mm.lead = q, cfg.Mail.Grace, log, store, lead
	mm.legacy = notify.FileStore{Spool: filepath.Join(cfg.LogDir, "session", "pending-mail.json"),
		StateFile: filepath.Join(cfg.LogDir, "session", "mail-state.json"), Logger: log.With("component", "mail")}
	mm.policy = notify.NewPolicy(notify.PolicyOptions{Threshold: cfg.LoadThreshold, Hysteresis: cfg.Mail.Hysteresis,
		HoldOff: cfg.Mail.HoldOff, MonitorURL: cfg.MonitorURL(), Send: send,
		Store: store, Fence: lead, Logger: log.With("component", "mail")})
	return mm, nil
}

// importLegacy moves the files earlier versions kept (pending-mail.json,
// mail-state.json) into the state bucket, once it can be reached, and
// renames them .imported; it reports whether that is done.
func (m *mailer) importLegacy() bool {
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

func (m *mailer) change(c alloc.Change) {
	if m != nil {
		m.policy.Change(c)
	}
}

func (m *mailer) report(r alloc.Report) {
	if m != nil {
		m.policy.Load(r.Server, r.Status, r.Load, r.Vector, r.At)
	}
}

// run sends digests as hold-off windows end, and reports once the
// configured servers never heard from within the start-up grace period.
func (m *mailer) run(ctx context.Context, reg *alloc.Registry) {
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
		switch l := m.lead.Holds(); {
		case l && !leading:
			// Level-triggered: the new leader mails the difference between
			// what was told and what is true now.
			leading = m.policy.TakeLead(nowStates(reg), now)
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
			for _, v := range reg.Snapshot() {
				switch v.State {
				case alloc.Unknown:
					m.log.Warn("server never heard from since start", "server", v.Server, "grace", m.grace)
					m.policy.NotResponding(v.Server, fmt.Sprintf("no heartbeat from its agent in the %s since the session server started", m.grace), now)
				case alloc.Down:
					if v.LastSeen.IsZero() || v.Status != alloc.StatusServiceDown {
						continue // a planned stop, or a loss mailed when it happened
					}
					m.log.Warn("server not up since start", "server", v.Server, "grace", m.grace, "reason", v.Reason)
					m.policy.NotResponding(v.Server, fmt.Sprintf("%s, for the %s since the session server started", v.Reason, m.grace), now)
				}
			}
		}
	}
}

// nowStates is the registry's view as the mail policy takes it over.
func nowStates(reg *alloc.Registry) []notify.Now {
	views := reg.Snapshot()
	out := make([]notify.Now, len(views))
	for i, v := range views {
		out[i] = notify.Now{Server: v.Server, State: v.State, Reason: v.Reason, Load: v.Load,
			Leaving: v.Status == alloc.StatusLeaving, Heard: !v.LastSeen.IsZero()}
	}
	return out
}

func (m *mailer) close() {
	if m != nil {
		m.queue.Close()
	}
}
