// Package logging sets up the coordinator's and agent's slog logger: text
// lines on standard output, or a file rotated as the original session
// server rotated it (500 kB × 10 in <logDir>/session/output.log).
package logging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"gopkg.in/natefinch/lumberjack.v2"
)

// The original's RotatingFileHandler(maxBytes=500000, backupCount=10).
const (
	MaxBytes   = 500_000
	MaxBackups = 10
)

// Stdout logs text lines to standard output.
func Stdout(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: level}))
}

// File logs to <dir>/output.log, rotated at MaxBytes with MaxBackups kept.
// The returned closer flushes and closes the file.
func File(dir string, level slog.Level) (*slog.Logger, io.Closer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("creating log directory: %w", err)
	}
	path := filepath.Join(dir, "output.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("log file %s cannot be created: %w", path, err)
	}
	fi, _ := f.Stat()
	f.Close()
	w := &rotator{lj: &lumberjack.Logger{Filename: path, MaxSize: 1, MaxBackups: MaxBackups}, max: MaxBytes, fallback: os.Stderr}
	if fi != nil {
		w.size = fi.Size()
	}
	// Error-level lines (an abandoned mail holds the only copy of an alert)
	// also go to standard error, the journal under systemd: a flood that
	// turns the rotated files over cannot take them.
	return slog.New(tee{
		file:   slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}),
		alerts: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}),
	}), w, nil
}

// tee writes every record to file, and error-level ones to alerts too.
type tee struct{ file, alerts slog.Handler }

func (t tee) Enabled(ctx context.Context, l slog.Level) bool {
	return t.file.Enabled(ctx, l) || t.alerts.Enabled(ctx, l)
}

func (t tee) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if t.file.Enabled(ctx, r.Level) {
		err = t.file.Handle(ctx, r)
	}
	if t.alerts.Enabled(ctx, r.Level) {
		err = errors.Join(err, t.alerts.Handle(ctx, r.Clone()))
	}
	return err
}

func (t tee) WithAttrs(as []slog.Attr) slog.Handler {
	return tee{t.file.WithAttrs(as), t.alerts.WithAttrs(as)}
}

func (t tee) WithGroup(name string) slog.Handler {
	return tee{t.file.WithGroup(name), t.alerts.WithGroup(name)}
}

// rotator makes lumberjack rotate at a byte size: lumberjack counts whole
// megabytes, the original rotated at 500 kB. lumberjack still does the
// renaming and the pruning of old files.
type rotator struct {
	mu       sync.Mutex // guards lj, size and max: one line written at a time
	lj       *lumberjack.Logger
	size     int64
	max      int64
	fallback io.Writer // where a line the file refused goes (standard error)
}

func (r *rotator) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.lj.Rotate(); err == nil {
			r.size = 0
		}
	}
	n, err := r.lj.Write(p)
	r.size += int64(n)
	if err != nil {
		// A full disk must not lose the line silently: say it where it
		// can still be read (the log is often on the same disk).
		fmt.Fprintf(r.fallback, "log file not written (%v): %s", err, p)
	}
	return n, err
}

func (r *rotator) Close() error { return r.lj.Close() }
