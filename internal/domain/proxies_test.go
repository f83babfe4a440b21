package domain

import (
	"net/netip"
	"testing"
)

func TestProxies(t *testing.T) {
	p := ParseProxies([]string{"127.0.0.1", "::1", "10.1.0.0/16", "192.0.2.7", "not an address"})
	if len(p) != 4 {
		t.Fatalf("%d proxies parsed, want 4: %v", len(p), p)
	}
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true}, // an IPv4 peer on a dual-stack listener
		{"10.1.200.3", true},
		{"10.2.0.1", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"127.0.0.2", false},
	} {
		if got := p.Trust(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("Trust(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}
