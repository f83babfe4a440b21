// Package logging sets up the coordinator's and agent's slog logger: text
// lines on standard output, or a file rotated as the original session
// server rotated it (500 kB × 10 in <logDir>/session/output.log).
package logging

import (
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
	w := &rotator{lj: &lumberjack.Logger{Filename: path, MaxSize: 1, MaxBackups: MaxBackups}, max: MaxBytes}
	if fi != nil {
		w.size = fi.Size()
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), w, nil
}

// rotator makes lumberjack rotate at a byte size: lumberjack counts whole
// megabytes, the original rotated at 500 kB. lumberjack still does the
// renaming and the pruning of old files.
type rotator struct {
	mu   sync.Mutex
	lj   *lumberjack.Logger
	size int64
	max  int64
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
	return n, err
}

func (r *rotator) Close() error { return r.lj.Close() }
