package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestFragmentedMessageOverTheLimit: the read limit holds for a message sent
// in fragments, each under the limit (6,000 bytes in two frames of 3,000).
func TestFragmentedMessageOverTheLimit(t *testing.T) {
	for _, path := range []string{"/", "/monitor"} {
		t.Run(path, func(t *testing.T) {
			addr, _ := serve(t, DefaultLimits(), Options{})
			d := websocket.Dialer{WriteBufferSize: 3000} // each buffer flush is one frame
			c, _, err := d.Dial("ws://"+addr+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			w, err := c.NextWriter(websocket.TextMessage)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write([]byte(strings.Repeat("x", 6000)))
			_ = w.Close()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				if _, _, err = c.ReadMessage(); err != nil {
					break
				}
			}
			if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
				t.Errorf("6,000 bytes in two fragments: %v, want close 1009", err)
			}
		})
	}
}
