package httpapi

import (
	"net/http"
	"testing"
)

func TestClientAddr(t *testing.T) {
	l := NewLimiter(0, 0, []string{"127.0.0.1", "10.0.0.0/8"})
	for _, tt := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct IPv4", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"direct IPv6 counted per /64", "[2001:db8:1:2:aaaa::1]:4000", nil, "2001:db8:1:2::/64"},
		{"another address of the same /64", "[2001:db8:1:2:bbbb::9]:4000", nil, "2001:db8:1:2::/64"},
		{"behind the local proxy", "127.0.0.1:4000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"the right-most untrusted hop", "127.0.0.1:4000", []string{"192.0.2.1, 198.51.100.7, 10.1.1.1"}, "198.51.100.7"},
		{"several header lines are one list", "127.0.0.1:4000", []string{"192.0.2.1", "198.51.100.7", "10.1.1.1"}, "198.51.100.7"},
		{"a forged first line does not win", "127.0.0.1:4000", []string{"192.0.2.99", "198.51.100.8"}, "198.51.100.8"},
		{"IPv6 behind the proxy", "127.0.0.1:4000", []string{"2001:db8:1:2:cccc::1"}, "2001:db8:1:2::/64"},
		{"an untrusted peer's header is ignored", "203.0.113.5:4000", []string{"198.51.100.7"}, "203.0.113.5"},
		{"the local proxy's own request", "127.0.0.1:4000", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://x/session", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := l.ClientAddr(r); got != tt.want {
				t.Errorf("ClientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}
