package coordinator

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/simgate/simgate/internal/alloc"
	"github.com/simgate/simgate/internal/cluster"
	"github.com/simgate/simgate/internal/config"
	"github.com/simgate/simgate/internal/metrics"
	"github.com/simgate/simgate/internal/notify"
)

// mailSMTP is the mail server as the configuration gives it, with the TLS
// its certificate is checked by.
func mailSMTP(cfg config.Config) (*notify.SMTP, error) {
	tlsCfg, err := notify.TLSFor(cfg.Mail.CAFile, cfg.VerifyMailCertificate())
	if err != nil {
		return nil, err
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
	return notify.CheckServer(ctx, smtp)
}

// startMailer makes the mail path from the configuration, over store (the
// coordinators' shared state), sending only while lead holds; nil when
// notifications are off.
func startMailer(cfg config.Config, log *slog.Logger, m *metrics.Metrics, store notify.Store, lead *cluster.Lead, reg *alloc.Registry) (*notify.Mailer, error) {
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
	mm, err := notify.NewMailer(notify.MailerOptions{
		SMTP: smtp, Store: store, Fence: lead, Grace: cfg.Mail.Grace, Logger: log,
		LegacyDir: filepath.Join(cfg.LogDir, "session"),
		Farm:      func() []notify.Now { return nowStates(reg) },
		Policy: notify.PolicyOptions{Threshold: cfg.LoadThreshold, Hysteresis: cfg.Mail.Hysteresis,
			HoldOff: cfg.Mail.HoldOff, MonitorURL: cfg.MonitorURL()},
		Queue: notify.QueueOptions{RetryMax: cfg.Mail.RetryMax, GiveUp: cfg.Mail.GiveUp,
			OnSent:      m.Mails.WithLabelValues("sent").Inc,
			OnFailed:    m.Mails.WithLabelValues("failed").Inc,
			OnAbandoned: m.Mails.WithLabelValues("abandoned").Inc,
			OnPending:   func(n int) { m.MailsPending.Set(float64(n)) }},
	})
	if err != nil {
		return nil, err
	}
	log.Info("e-mail notifications on", "administrator", cfg.Administrator, "server", cfg.MailServer,
		"port", cfg.MailServerPort, "auth", cfg.MailSenderPassword != "")
	return mm, nil
}

// nowStates is the registry's view as the mail policy takes it.
func nowStates(reg *alloc.Registry) []notify.Now {
	views := reg.Snapshot()
	out := make([]notify.Now, len(views))
	for i, v := range views {
		out[i] = notify.Now{Server: v.Server, State: v.State, Reason: v.Reason, Load: v.Load,
			Leaving: v.Status == alloc.StatusLeaving, Heard: !v.LastSeen.IsZero(), ServiceDown: v.Status == alloc.StatusServiceDown}
	}
	return out
}
