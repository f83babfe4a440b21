package cluster

import (
	"net"
	"net/url"
	"strconv"
)

// Size is how many coordinators the configured cluster has (1 alone): the
// distinct routes, this member's own address (bound, or resolved to one of
// this machine's addresses on the listen port) counted once. JetStream
// keeps three copies of the state from three members on.
func Size(listen string, routes []string, bound *net.TCPAddr) int {
	local := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				local[ipn.IP.String()] = true
			}
		}
	}
	listenPort := 0
	if bound != nil {
		listenPort = bound.Port
	}
	if _, p, err := net.SplitHostPort(listen); err == nil {
		if n, _ := strconv.Atoi(p); n != 0 {
			listenPort = n
		}
	}
	others := map[string]bool{}
	for _, r := range routes {
		u, err := url.Parse(r)
		if err != nil {
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		isSelf := false
		if port == listenPort {
			ips, _ := net.LookupHost(u.Hostname())
			for _, ip := range ips {
				if local[ip] {
					isSelf = true
				}
			}
		}
		if !isSelf {
			others[u.Host] = true
		}
	}
	return len(others) + 1
}

// Replicas is how many copies of the state JetStream keeps.
func Replicas(members int) int {
	if members >= 3 {
		return 3
	}
	return 1
}
