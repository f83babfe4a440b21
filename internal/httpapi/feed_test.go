package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/simgate/simgate/internal/testutil"
)

func (f *feed) buildCount() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.builds
}

// TestMonitorFeedIsSharedAndCapped: however many live monitor pages and
// /api/servers readers there are, the farm document is built at most once
// per refresh, every client gets the same bytes; /monitor clients are
// capped in all and per address, with a 503 over the cap.
func TestMonitorFeedIsSharedAndCapped(t *testing.T) {
	addr, api := serve(t, DefaultLimits(), Options{MaxMonitorClients: 40, MaxMonitorPerAddress: 30,
		Limiter: NewLimiter(0, 0, []string{"127.0.0.1"})}) // as the coordinator sets it: addresses behind the local proxy
	const clients = 30
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/monitor", nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	var wg sync.WaitGroup
	first := make([]string, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, msg, err := c.ReadMessage()
			if err == nil {
				first[i] = string(msg)
			}
		}()
	}
	wg.Wait()
	// One shared document; two at most if a new version (the history's 5 s
	// point) fell while the pages connected on a slow machine.
	versions := map[string]bool{}
	for i, m := range first {
		if m == "" {
			t.Fatalf("client %d got nothing", i)
		}
		versions[m] = true
	}
	if len(versions) > 2 {
		t.Fatalf("%d different first documents among %d pages: every page must get the shared one", len(versions), clients)
	}
	var doc serversJSON
	if err := json.Unmarshal([]byte(first[0]), &doc); err != nil || len(doc.Servers) != 1 {
		t.Fatalf("document: %v %s", err, first[0])
	}
	// A second of 30 live pages and 200 /api/servers requests: a handful of
	// builds (one per refresh), not one per reader.
	before := api.feed.buildCount()
	begin := time.Now()
	for range 200 {
		resp, err := http.Get("http://" + addr + "/api/servers")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	testutil.WaitFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if time.Since(begin) < time.Second {
			return fmt.Errorf("still within the second")
		}
		return nil
	})
	builds := api.feed.buildCount() - before
	limit := uint64(time.Since(begin)/monitorRefresh) + 3
	t.Logf("%v with %d live pages and 200 /api/servers requests: %d documents built", time.Since(begin).Round(time.Millisecond), clients, builds)
	if builds > limit {
		t.Errorf("%d documents built, want at most %d (one per %v)", builds, limit, monitorRefresh)
	}

	// Per address: 30 pages are this address's share.
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/monitor", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a 31st page from one address: %v %v, want 503", resp, err)
	}
	// In all: 40, so 10 more from other addresses (behind the trusted local proxy).
	for i := range 11 {
		h := http.Header{"X-Forwarded-For": []string{fmt.Sprintf("192.0.2.%d", i+1)}}
		c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/monitor", h)
		if i < 10 {
			if err != nil {
				t.Fatalf("page %d from another address: %v", i, err)
			}
			t.Cleanup(func() { c.Close() })
			continue
		}
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("the 41st page: %v %v, want 503", resp, err)
		}
	}
	if !strings.Contains(first[0], `"now":"`) {
		t.Error("the document carries no time")
	}
}
