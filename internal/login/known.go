package login

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/simgate/simgate/internal/durable"
	"io/fs"
	"log/slog"
	"os"
	"time"
)

// knownFile is the file's form: addresses a login succeeded from, with
// when last. Addresses only, no secret: a leaked file tells who logged in
// from where, not how.
type knownFile struct {
	V     int                  `json:"v"`
	Known map[string]time.Time `json:"known"`
}

// LoadKnown reads the addresses kept by SaveKnown. A missing file is
// none; a file that does not read is set aside (renamed with a
// .corrupt-<time> suffix) and none are returned, with an error that
// says so: never a reason not to start.
func LoadKnown(path string) (map[string]time.Time, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f knownFile
	if err := json.Unmarshal(data, &f); err != nil || f.V != 1 {
		aside, rerr := durable.SetAside(path)
		if rerr != nil {
			return nil, fmt.Errorf("%s does not read (%v), and cannot be set aside: %w", path, err, rerr)
		}
		return nil, fmt.Errorf("%s does not read (%v): set aside as %s", path, err, aside)
	}
	return f.Known, nil
}

// SaveKnown writes addrs to path (mode 600), whole or not at all.
func SaveKnown(path string, addrs map[string]time.Time) error {
	data, err := json.Marshal(knownFile{V: 1, Known: addrs})
	if err != nil {
		return err
	}
	return durable.Write(path, data, 0o600)
}

// Keep restores the addresses kept in path by the last run (a file that
// does not read is set aside, with a warning), then writes them there when
// they changed, at most once a minute, and once more when ctx ends; a
// failed write is logged and tried again. It returns once restored: the
// writes go on in the background, done is closed when they end.
func (g *Guard) Keep(ctx context.Context, path string, log *slog.Logger) (done <-chan struct{}) {
	addrs, err := LoadKnown(path)
	if err != nil {
		log.Warn("the addresses logins succeeded from could not be read: until they log in again, they get no priority under a password guess",
			"error", err)
	}
	g.Know(addrs)
	_, saved := g.Known()
	save := func() {
		addrs, v := g.Known()
		if v == saved {
			return
		}
		if err := SaveKnown(path, addrs); err != nil {
			log.Warn("cannot keep the addresses logins succeeded from; will retry", "file", path, "error", err)
			return
		}
		saved = v
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				save()
				return
			case <-t.C:
				save()
			}
		}
	}()
	return ended
}
