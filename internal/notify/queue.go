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
	"slices"
	"sync"
	"time"

	"github.com/simgate/simgate/internal/durable"
	"github.com/simgate/simgate/internal/logging"
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
	// PendingFor is how long the mail has been pending, counted on the
	// monotonic clocks of the coordinators that held it (nanoseconds): the
	// give-up age, which a clock step cannot move (issue 30: a +48 h step
	// on a new leader abandoned a mail created a minute before). Absent
	// in older records: the age since Created stands in.
	PendingFor time.Duration `json:"pendingFor,omitempty"`
	// since is when this process last added to PendingFor (monotonic).
	since time.Time
	// kept: the Store has held this mail (a write with it succeeded, or it
	// was loaded from there). Missing from the Store later, another
	// leader sent or abandoned it meanwhile.
	kept bool
}

// age is m's pending time at now: PendingFor plus what this process held
// it for since.
func (m *Mail) age(now time.Time) time.Duration {
	if m.since.IsZero() {
		return m.PendingFor
	}
	return m.PendingFor + now.Sub(m.since)
}

// hold counts m's pending time up to now into PendingFor.
func (m *Mail) hold(now time.Time) {
	m.PendingFor, m.since = m.age(now), now
}

// Transport delivers one mail; SMTP is the real one.
type Transport interface {
	Send(ctx context.Context, m Mail) error
}

// Fence is the cluster's leadership (cluster.Lead), asked immediately
// before each side effect: a mail handed to SMTP, a write of the pending
// mails or of what the administrator was told. A member that lost the
// lead, or hung while another was elected, does none of them.
type Fence interface {
	Holds() bool
}

// Store keeps what must outlive this coordinator, where the next one (or
// the member of the cluster that takes over) finds it: the pending mails
// and the hold-off state. The coordinator's is JetStream's (state.KV);
// FileStore reads the files earlier versions kept.
type Store interface {
	// LoadMails returns the pending mails; entries it cannot read are set
	// aside (logged), never an error.
	LoadMails() ([]Mail, error)
	// SaveMails replaces the pending mails with these.
	SaveMails([]Mail) error
	// LoadHolds returns every server's hold-off state.
	LoadHolds() (map[string]Hold, error)
	// SaveHolds writes these servers' states; a zero Hold deletes one.
	SaveHolds(map[string]Hold) error
}

// QueueOptions configures a Queue.
type QueueOptions struct {
	Transport Transport
	Logger    *slog.Logger
	// Store keeps pending mails between runs; nil keeps them in memory only.
	Store Store
	// Fence, when set, says whether this coordinator sends the mails (the
	// cluster's leader): a queue that is not the leader sends nothing and
	// keeps nothing in memory; one that becomes it takes the pending mails
	// from Store. nil: a lone coordinator, which always sends.
	Fence    Fence
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
	mu    sync.Mutex // guards mails, dirty, leading and sent; never held across Store or Transport calls
	mails []Mail
	dirty bool // Store is behind q.mails: the sender writes it
	// sent is the mails this queue handed to SMTP, with when: never taken
	// from Store again, even once their removal is written (a replica's
	// stale read after a leader change brought one back: it went twice).
	// Forgotten after sentKept.
	sent    map[string]time.Time
	leading bool // this queue sends (it has loaded Store's mails)
	wake    chan struct{}
	done    chan struct{}
	stop    context.CancelFunc
	errLog  *logging.Throttle
	started time.Time // store errors before startGrace are the cluster meeting, not faults
}

// startGrace is how long after its start a queue's store errors are
// warnings: a cluster member starts before its peers, and its state bucket
// answers only once a majority has met.
const startGrace = 30 * time.Second

// leaderCheck is how often a queue looks whether it leads, and retries a
// Store it could not reach.
const leaderCheck = 250 * time.Millisecond

// NewQueue starts sending; the pending mails are loaded from Store once
// this queue leads (at once without a Fence).
func NewQueue(o QueueOptions) (*Queue, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FirstTry <= 0 {
		o.FirstTry = 500 * time.Millisecond
	}
	q := &Queue{o: o, sent: map[string]time.Time{}, wake: make(chan struct{}, 1), done: make(chan struct{}), errLog: logging.NewThrottle(time.Minute, 16),
		started: time.Now()}
	q.lead() // a single coordinator sends from the start
	q.pending()
	ctx, cancel := context.WithCancel(context.Background())
	q.stop = cancel
	go q.run(ctx)
	return q, nil
}

// lead follows leadership: on taking it, the pending mails are read from
// Store (and merged with any enqueued meanwhile); on losing it, what is
// pending is written there for the new leader and forgotten here.
func (q *Queue) lead() {
	want := q.o.Fence == nil || q.o.Fence.Holds()
	q.mu.Lock()
	leading := q.leading
	q.mu.Unlock()
	switch {
	case want && !leading:
		var kept []Mail
		if q.o.Store != nil {
			var err error
			if kept, err = q.o.Store.LoadMails(); err != nil {
				q.storeError("cannot read the pending mails; will retry", err)
				return
			}
		}
		now := time.Now()
		q.mu.Lock()
		if q.o.Store != nil {
			// The shared record is the truth: a mail this queue held and
			// the Store has no more was sent (or abandoned) by the leader
			// meanwhile; resending it from memory would mail it twice (a
			// stepdown while SMTP hung, issue 30). A mail never kept lives
			// nowhere else: it stays.
			inStore := make(map[string]bool, len(kept))
			for _, m := range kept {
				inStore[m.ID] = true
			}
			n := len(q.mails)
			q.mails = slices.DeleteFunc(q.mails, func(m Mail) bool { return m.kept && !inStore[m.ID] })
			if gone := n - len(q.mails); gone > 0 {
				q.o.Logger.Info("mails another coordinator sent meanwhile: not sent again", "count", gone)
			}
		}
		for _, m := range kept {
			if q.indexLocked(m) >= 0 {
				continue
			}
			if _, sent := q.sent[m.ID]; sent {
				q.dirty = true // it leaves Store at the next write
				q.o.Logger.Info("a mail this coordinator sent is still in the shared record: not sent again", "id", m.ID)
				continue
			}
			if !wellFormed([]Mail{m}) {
				q.o.Logger.Error("pending mail unreadable: dropped", "id", m.ID)
				q.dirty = true
				continue
			}
			m.NextTry = now        // a new leader: try at once
			if m.PendingFor == 0 { // an older record: its wall-clock age, once
				m.PendingFor = max(0, now.Round(0).Sub(m.Created.Round(0)))
			}
			m.since, m.kept = now, true
			q.mails = append(q.mails, m)
		}
		slices.SortFunc(q.mails, func(a, b Mail) int { return a.Created.Compare(b.Created) })
		q.leading = true
		n := len(q.mails)
		q.mu.Unlock()
		if len(kept) > 0 {
			q.o.Logger.Info("mails pending from an earlier run or another coordinator", "count", len(kept))
		}
		if q.o.Fence != nil {
			q.o.Logger.Info("this coordinator now sends the mails (cluster leader)", "pending", n)
		}
		q.pending()
	case !want && leading:
		q.persist()
		q.mu.Lock()
		q.leading = false
		n := len(q.mails)
		if !q.dirty {
			q.mails = nil // the new leader has them
		}
		q.mu.Unlock()
		q.o.Logger.Info("this coordinator no longer sends the mails: another one leads", "pending", n)
		q.pending()
	}
}

func (q *Queue) storeError(msg string, err error) {
	now := time.Now()
	if held, ok := q.errLog.Allow(msg, now); ok {
		if now.Sub(q.started) < startGrace {
			q.o.Logger.Warn(msg, "error", err, "since_last_line", held, "why", "the state bucket is not reachable yet (a cluster's members still meeting)")
			return
		}
		q.o.Logger.Error(msg, "error", err, "since_last_line", held)
	}
}

// wellFormed reports whether mails each have an ID, a subject and a body.
func wellFormed(mails []Mail) bool {
	for _, m := range mails {
		if m.Subject == "" || m.Body == "" || m.Created.IsZero() || m.ID == "" {
			return false
		}
	}
	return true
}

// newID is a unique mail ID: its creation time and 64 random bits.
func newID(created time.Time) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%d-%s", created.UnixNano(), hex.EncodeToString(b))
}

// Enqueue adds a mail and returns at once.
func (q *Queue) Enqueue(subject, body string) {
	now := time.Now()
	q.mu.Lock()
	q.mails = append(q.mails, Mail{ID: newID(now), Subject: subject, Body: body, Created: now, NextTry: now, since: now})
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

// Close stops sending and keeps what is pending in Store for the next run.
func (q *Queue) Close() {
	q.stop()
	<-q.done
	q.persist()
	q.mu.Lock()
	n, dirty := len(q.mails), q.dirty
	q.mu.Unlock()
	switch {
	case n > 0 && dirty:
		q.o.Logger.Error("mails still pending at stop could not be kept", "count", n)
	case n > 0:
		q.o.Logger.Warn("mails still pending at stop; they will be sent after the next start, or by the coordinator that leads now", "count", n)
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
		q.lead()
		q.persist() // a new mail is kept before its first attempt
		q.mu.Lock()
		leading := q.leading
		q.mu.Unlock()
		var next time.Time
		if leading {
			next = q.sendDue(ctx)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		q.mu.Lock()
		retry := q.dirty || (q.o.Fence != nil) || !q.leading
		q.mu.Unlock()
		switch {
		case retry && (next.IsZero() || time.Until(next) > leaderCheck):
			timer.Reset(leaderCheck)
		case !next.IsZero():
			timer.Reset(time.Until(next))
		}
	}
}

// sendDue tries every mail whose time has come, one at a time, and returns
// when the next one is due (zero: none pending).
func (q *Queue) sendDue(ctx context.Context) time.Time {
	saved := time.Now()
	defer q.persist()
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
		if idx < 0 || !q.leading {
			q.mu.Unlock()
			return next
		}
		m := q.mails[idx]
		q.mu.Unlock()

		// Fenced: leadership is checked right before the mail is handed to
		// SMTP; a member that lost it (or hung while another was elected)
		// sends nothing more.
		if q.o.Fence != nil && !q.o.Fence.Holds() {
			return next
		}
		err := q.o.Transport.Send(ctx, m)
		if ctx.Err() != nil {
			return time.Time{}
		}
		q.mu.Lock()
		// Find it again: Enqueue may have appended meanwhile, nothing removes but us.
		i := max(q.indexLocked(m), 0)
		switch {
		case err == nil:
			q.mails = append(q.mails[:i], q.mails[i+1:]...)
			q.sent[m.ID] = time.Now()
			for id, at := range q.sent {
				if time.Since(at) > sentKept {
					delete(q.sent, id)
				}
			}
			q.o.Logger.Info("mail sent", "subject", m.Subject, "attempts", m.Attempts+1, "id", m.ID)
			call(q.o.OnSent)
		case m.age(time.Now()) >= q.o.GiveUp:
			q.mails = append(q.mails[:i], q.mails[i+1:]...)
			q.o.Logger.Error("mail abandoned", "subject", m.Subject, "attempts", m.Attempts+1,
				"age", m.age(time.Now()).Round(time.Second), "error", err, "body", m.Body)
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
		q.mu.Unlock()
		if err == nil {
			q.forget(m.ID)
		}
		if err == nil || time.Since(saved) >= time.Second {
			// A sent mail leaves Store at once (a new leader must not send it
			// again); a long pass of failures writes once a second.
			q.persist()
			saved = time.Now()
		}
		q.pending()
	}
}

func (q *Queue) indexLocked(m Mail) int {
	for i, x := range q.mails {
		if x.ID == m.ID {
			return i
		}
	}
	return -1
}

// forgetter is a Store that can drop one mail whoever leads (state.KV).
type forgetter interface{ ForgetMail(id string) error }

// forget takes a mail this queue sent out of Store at once, even if this
// coordinator lost the lead meanwhile: removing a sent mail is right
// whoever leads, and a leader that takes over before the removal would
// send it again (issue 30: the lead lost for a moment between the send
// and the write, and regained: the mail went twice).
func (q *Queue) forget(id string) {
	if f, ok := q.o.Store.(forgetter); ok {
		_ = f.ForgetMail(id) // else the next write as leader removes it; q.sent keeps it from coming back
	}
}

// sentKept is how long a sent mail's ID is remembered (Queue.sent).
const sentKept = time.Hour

// persist writes the pending mails to Store when they changed, outside
// the lock: Enqueue never waits for the disk or the cluster.
func (q *Queue) persist() {
	// Fenced like a send: only the leader writes the pending mails (each
	// is written before its first attempt, so a member that lost the lead
	// has nothing its successor lacks, and must not overwrite its state).
	if q.o.Store == nil || (q.o.Fence != nil && !q.o.Fence.Holds()) {
		return
	}
	q.mu.Lock()
	if !q.dirty {
		q.mu.Unlock()
		return
	}
	snap := slices.Clone(q.mails)
	q.dirty = false
	q.mu.Unlock()
	now := time.Now()
	for i := range snap {
		snap[i].PendingFor = snap[i].age(now)
	}
	if err := q.o.Store.SaveMails(snap); err != nil {
		q.mu.Lock()
		q.dirty = true // try again at the next pass
		q.mu.Unlock()
		q.storeError("cannot keep the pending mails; will retry", err)
		return
	}
	q.mu.Lock()
	for _, m := range snap {
		if i := q.indexLocked(m); i >= 0 {
			q.mails[i].kept = true
		}
	}
	q.mu.Unlock()
}

// FileStore is the files earlier versions kept: pending mails in Spool
// (JSON array), the hold-off state in StateFile. A file that cannot be read
// is set aside (renamed .corrupt-<time>), never a reason not to start.
type FileStore struct {
	Spool, StateFile string
	Logger           *slog.Logger
}

// LoadMails implements Store.
func (f FileStore) LoadMails() ([]Mail, error) {
	var mails []Mail
	if !f.read(f.Spool, "pending mails", &mails, func() bool { return wellFormedFile(mails) }) {
		return nil, nil
	}
	for i := range mails {
		if mails[i].ID == "" {
			mails[i].ID = newID(mails[i].Created)
		}
	}
	return mails, nil
}

// wellFormedFile accepts a spool's mails without IDs (older versions wrote none).
func wellFormedFile(mails []Mail) bool {
	for _, m := range mails {
		if m.Subject == "" || m.Body == "" || m.Created.IsZero() {
			return false
		}
	}
	return true
}

// SaveMails implements Store.
func (f FileStore) SaveMails(mails []Mail) error {
	if len(mails) == 0 {
		if err := os.Remove(f.Spool); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	data, _ := json.MarshalIndent(mails, "", "  ")
	return durable.Write(f.Spool, data, 0o600)
}

// LoadHolds implements Store.
func (f FileStore) LoadHolds() (map[string]Hold, error) {
	var kept map[string]Hold
	f.read(f.StateFile, "mail hold-off state", &kept, func() bool { return true })
	return kept, nil
}

// SaveHolds implements Store: the file holds every server's state.
func (f FileStore) SaveHolds(changed map[string]Hold) error {
	kept, _ := f.LoadHolds()
	if kept == nil {
		kept = map[string]Hold{}
	}
	for name, h := range changed {
		if h == (Hold{}) {
			delete(kept, name)
		} else {
			kept[name] = h
		}
	}
	data, _ := json.Marshal(kept)
	return durable.Write(f.StateFile, data, 0o600)
}

// read decodes path into v; false when there is nothing usable (no file,
// or a corrupt one, which is set aside).
func (f FileStore) read(path, what string, v any, ok func() bool) bool {
	if path == "" {
		return false
	}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false
	}
	if err == nil {
		if err = json.Unmarshal(data, v); err == nil && !ok() {
			err = fmt.Errorf("an entry lacks its subject, body or creation time")
		}
	}
	if err != nil {
		log := f.Logger
		if log == nil {
			log = slog.Default()
		}
		aside, rerr := durable.SetAside(path)
		log.Error(what+" unreadable: file set aside, starting afresh", "file", path, "aside", aside, "error", err, "rename_error", rerr)
		return false
	}
	return true
}
