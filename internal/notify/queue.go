// Package notify e-mails the administrator: a policy decides which state
// changes deserve a mail (no storms), a queue sends them without ever
// blocking the caller, retries with back-off, keeps what is pending across
// restarts, and logs at error level any mail it finally abandons. It knows
// SMTP and the registry's changes; nothing of NATS or HTTP.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Mail is one notification.
type Mail struct {
	// ID is the mail's own, kept across retries and restarts: its
	// Message-ID, so a receiver can drop a copy sent twice (an SMTP server
	// that took it and died before answering).
	ID       string    `json:"id"`
	Subject  string    `json:"subject"`
	Body     string    `json:"body"`
	Created  time.Time `json:"created"`
	Attempts int       `json:"attempts"`
	NextTry  time.Time `json:"nextTry"`
	LastErr  string    `json:"lastError,omitempty"`
}

// Transport delivers one mail; SMTP is the real one.
type Transport interface {
	Send(ctx context.Context, m Mail) error
}

// QueueOptions configures a Queue.
type QueueOptions struct {
	Transport Transport
	Logger    *slog.Logger
	// Spool keeps pending mails between runs; "" keeps them in memory only.
	Spool    string
	FirstTry time.Duration // first retry delay, doubled each time (default 500 ms)
	RetryMax time.Duration // longest delay between attempts
	GiveUp   time.Duration // age at which an unsent mail is abandoned
	// Hooks for metrics; any may be nil.
	OnSent, OnFailed, OnAbandoned func()
	OnPending                     func(n int)
}

// Queue sends mails in the background.
type Queue struct {
	o     QueueOptions
	mu    sync.Mutex
	mails []Mail
	dirty bool // the spool is behind q.mails: the sender writes it
	wake  chan struct{}
	done  chan struct{}
	stop  context.CancelFunc
}

// NewQueue loads the spool, if any, and starts sending.
func NewQueue(o QueueOptions) (*Queue, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FirstTry <= 0 {
		o.FirstTry = 500 * time.Millisecond
	}
	q := &Queue{o: o, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if o.Spool != "" {
		data, err := os.ReadFile(o.Spool)
		switch {
		case err == nil:
			if err := json.Unmarshal(data, &q.mails); err != nil || !wellFormed(q.mails) {
				// Never a reason not to start: set the file aside for a look.
				q.mails = nil
				aside := fmt.Sprintf("%s.corrupt-%s", o.Spool, time.Now().UTC().Format("20060102T150405Z"))
				rerr := os.Rename(o.Spool, aside)
				o.Logger.Error("pending mails unreadable: file set aside, starting with none", "spool", o.Spool,
					"aside", aside, "error", err, "rename_error", rerr)
			}
			now := time.Now()
			for i := range q.mails {
				q.mails[i].NextTry = now // a new run: try at once
				if q.mails[i].ID == "" {
					q.mails[i].ID = newID(q.mails[i].Created)
					q.dirty = true // keep the new ID: retries must carry the same one
				}
			}
			if len(q.mails) > 0 {
				o.Logger.Info("mails pending from the last run", "count", len(q.mails), "spool", o.Spool)
			}
		case !os.IsNotExist(err):
			return nil, fmt.Errorf("reading pending mails: %w", err)
		}
	}
	q.pending()
	ctx, cancel := context.WithCancel(context.Background())
	q.stop = cancel
	go q.run(ctx)
	return q, nil
}

// wellFormed reports whether a spool's mails each have a subject and body.
func wellFormed(mails []Mail) bool {
	for _, m := range mails {
		if m.Subject == "" || m.Body == "" || m.Created.IsZero() {
			return false
		}
	}
	return true
}

// newID is a unique mail ID: its creation time and 64 random bits.
func newID(created time.Time) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%d.%s", created.UnixNano(), hex.EncodeToString(b))
}

// Enqueue adds a mail and returns at once.
func (q *Queue) Enqueue(subject, body string) {
	now := time.Now()
	q.mu.Lock()
	q.mails = append(q.mails, Mail{ID: newID(now), Subject: subject, Body: body, Created: now, NextTry: now})
	q.dirty = true // written by the sender goroutine: never on the caller's (the heartbeat's) path
	q.mu.Unlock()
	q.pending()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Pending is the number of mails not yet sent.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.mails)
}

// Close stops sending and keeps what is pending in the spool for the next run.
func (q *Queue) Close() {
	q.stop()
	<-q.done
	q.mu.Lock()
	defer q.mu.Unlock()
	q.saveLocked()
	if n := len(q.mails); n > 0 {
		q.o.Logger.Warn("mails still pending at stop; they will be sent after the next start", "count", n, "spool", q.o.Spool)
	}
}

func (q *Queue) pending() {
	if q.o.OnPending != nil {
		q.o.OnPending(q.Pending())
	}
}

func call(f func()) {
	if f != nil {
		f()
	}
}

func (q *Queue) run(ctx context.Context) {
	defer close(q.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-timer.C:
		}
		q.mu.Lock()
		q.saveLocked() // a new mail reaches the disk before its first attempt
		q.mu.Unlock()
		next := q.sendDue(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// sendDue tries every mail whose time has come, one at a time, and returns
// when the next one is due (zero: none pending).
func (q *Queue) sendDue(ctx context.Context) time.Time {
	saved := time.Now()
	defer func() {
		q.mu.Lock()
		q.saveLocked()
		q.mu.Unlock()
	}()
	for {
		q.mu.Lock()
		now := time.Now()
		idx := -1
		var next time.Time
		for i, m := range q.mails {
			if !m.NextTry.After(now) {
				idx = i
				break
			}
			if next.IsZero() || m.NextTry.Before(next) {
				next = m.NextTry
			}
		}
		if idx < 0 {
			q.mu.Unlock()
			return next
		}
		m := q.mails[idx]
		q.mu.Unlock()

		err := q.o.Transport.Send(ctx, m)
		if ctx.Err() != nil {
			return time.Time{}
		}
		q.mu.Lock()
		// Find it again: Enqueue may have appended meanwhile, nothing removes but us.
		i := q.indexLocked(m)
		switch {
		case err == nil:
			q.mails = append(q.mails[:i], q.mails[i+1:]...)
			q.o.Logger.Info("mail sent", "subject", m.Subject, "attempts", m.Attempts+1)
			call(q.o.OnSent)
		case time.Since(m.Created) >= q.o.GiveUp:
			q.mails = append(q.mails[:i], q.mails[i+1:]...)
			q.o.Logger.Error("mail abandoned", "subject", m.Subject, "attempts", m.Attempts+1,
				"age", time.Since(m.Created).Round(time.Second), "error", err, "body", m.Body)
			call(q.o.OnAbandoned)
		default:
			m.Attempts++
			delay := q.o.FirstTry << min(m.Attempts-1, 20)
			if delay > q.o.RetryMax || delay <= 0 {
				delay = q.o.RetryMax
			}
			m.NextTry = time.Now().Add(delay)
			m.LastErr = err.Error()
			q.mails[i] = m
			q.o.Logger.Warn("mail not sent; will retry", "subject", m.Subject, "attempt", m.Attempts,
				"retry_in", delay, "error", err)
			call(q.o.OnFailed)
		}
		q.dirty = true
		if time.Since(saved) >= time.Second {
			q.saveLocked() // a long pass (a queue of thousands failing) writes once a second, not per attempt
			saved = time.Now()
		}
		q.mu.Unlock()
		q.pending()
	}
}

func (q *Queue) indexLocked(m Mail) int {
	for i, x := range q.mails {
		if x.ID == m.ID {
			return i
		}
	}
	return 0
}

// saveLocked writes the pending mails to the spool, when they changed,
// atomically and durably (written, synced, renamed, the folder synced: a
// power cut leaves the old file or the new one, never an empty one); q.mu
// is held.
func (q *Queue) saveLocked() {
	if q.o.Spool == "" || !q.dirty {
		return
	}
	q.dirty = false
	if len(q.mails) == 0 {
		if err := os.Remove(q.o.Spool); err != nil && !os.IsNotExist(err) {
			q.o.Logger.Warn("cannot clear the mail spool", "spool", q.o.Spool, "error", err)
		}
		return
	}
	data, _ := json.MarshalIndent(q.mails, "", "  ")
	if err := writeDurably(q.o.Spool, data); err != nil {
		q.dirty = true // try again at the next pass
		q.o.Logger.Error("cannot keep pending mails on disk", "spool", q.o.Spool, "error", err)
	}
}

// writeDurably replaces path with data: a temporary file, synced, renamed
// over path, and the folder synced.
func writeDurably(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
