package notify

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// stalled is an SMTP server that never answers: the queue only grows.
type stalled struct{}

func (stalled) Send(ctx context.Context, _ Mail) error { <-ctx.Done(); return ctx.Err() }

// BenchmarkEnqueueWith20000Pending is what a new mail costs its caller (the
// heartbeat path, through the mail policy) while 20,000 mails wait with a
// spool on disk: go test -bench Enqueue -benchmem ./internal/notify
func BenchmarkEnqueueWith20000Pending(b *testing.B) {
	q, err := NewQueue(QueueOptions{Transport: stalled{}, Logger: slog.New(slog.DiscardHandler),
		Store: FileStore{Spool: filepath.Join(b.TempDir(), "pending-mail.json")}, RetryMax: time.Minute, GiveUp: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	for range 20000 {
		q.Enqueue(SubjectFull, "a/1 simulation server has reached maximum load (97.0%).\n")
	}
	b.ResetTimer()
	for b.Loop() {
		q.Enqueue(SubjectFull, "a/1 simulation server has reached maximum load (97.0%).\n")
	}
}
