package loadtest

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

type flipStats struct {
	max, median time.Duration
	missed      int
}

// wsFlip connects n WebSocket clients to / of f, makes every server full
// through the helper, and times when each client hears "0". It also returns
// how much the coordinator's resident memory grew with the clients.
func wsFlip(ctx context.Context, f *farm, n int) (flipStats, int64, error) {
	before, err := rss(f.pid)
	if err != nil {
		return flipStats{}, 0, err
	}
	url := strings.Replace(f.base, "http://", "ws://", 1) + "/"
	conns := make([]*websocket.Conn, n)
	sem := make(chan struct{}, 128)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 256, WriteBufferSize: 256}
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, _, err := dialer.DialContext(ctx, url, nil)
			if err != nil {
				errs <- err
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "1" {
				errs <- fmt.Errorf("first message %q, %v", msg, err)
				c.Close()
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		closeAll(conns)
		return flipStats{}, 0, fmt.Errorf("connecting %d WebSocket clients: %w", n, err)
	}
	defer closeAll(conns)
	after, _ := rss(f.pid)

	got := make([]time.Duration, n)
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(start.Add(5 * time.Second))
			if _, msg, err := c.ReadMessage(); err == nil && string(msg) == "0" {
				got[i] = time.Since(start)
			}
		}()
	}
	if _, err := io.WriteString(f.toAgts, "full\n"); err != nil {
		return flipStats{}, 0, err
	}
	wg.Wait()
	_, _ = io.WriteString(f.toAgts, "free\n")
	var s flipStats
	var heard []time.Duration
	for _, d := range got {
		if d == 0 {
			s.missed++
			continue
		}
		heard = append(heard, d)
	}
	if len(heard) > 0 {
		slices.Sort(heard)
		s.max, s.median = heard[len(heard)-1], heard[len(heard)/2]
	}
	return s, after - before, nil
}

func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
