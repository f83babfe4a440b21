package coordinator

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/simgate/simgate/internal/login"
)

// knownPath is where the addresses logins succeeded from are kept, so
// that a restarted coordinator under a password guess still checks the
// real admin first (login.Guard.Know; README, Security).
func (c *Coordinator) knownPath() string {
	return filepath.Join(c.cfg.LogDir, "session", "known-logins.json")
}

// loadKnown gives g the addresses kept by the last run.
func (c *Coordinator) loadKnown(g *login.Guard) {
	addrs, err := login.LoadKnown(c.knownPath())
	if err != nil {
		c.log.Warn("the addresses logins succeeded from could not be read: until they log in again, they get no priority under a password guess",
			"error", err)
	}
	g.Know(addrs)
}

// keepKnown writes g's known addresses when they changed, at most once a
// minute, and once more when ctx ends.
func (c *Coordinator) keepKnown(ctx context.Context, g *login.Guard) {
	_, saved := g.Known()
	save := func() {
		addrs, v := g.Known()
		if v == saved {
			return
		}
		path := c.knownPath()
		err := os.MkdirAll(filepath.Dir(path), 0o700)
		if err == nil {
			err = login.SaveKnown(path, addrs)
		}
		if err != nil {
			c.log.Warn("cannot keep the addresses logins succeeded from; will retry", "file", path, "error", err)
			return
		}
		saved = v
	}
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
}
