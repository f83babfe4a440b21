package httpapi

import (
	"log/slog"
	"testing"
)

func TestWebSocketCapFollowsTheFileLimit(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		configured int
		limit      uint64
		want       int
	}{
		{20000, 20000, 15000}, // the review's case: 20,000 clients could never all get a descriptor
		{20000, 1 << 20, 20000},
		{100, 1024, 100},
		{20000, 1024, 512},
		{20000, 256, 1},
	} {
		if got := capFor(tt.configured, false, tt.limit, quiet); got != tt.want {
			t.Errorf("capFor(%d, file limit %d) = %d, want %d", tt.configured, tt.limit, got, tt.want)
		}
	}
}
