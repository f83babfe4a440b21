package alloc

import (
	"net"
	"net/url"
	"path"
	"strings"
)

// normalURL is a world URL as a simulation server reads it, for matching
// repository prefixes (PROTOCOL §1.1): the scheme and host in lower case,
// the default port dropped, the path percent-decoded with its dot segments
// and doubled slashes resolved, and on github.com the owner and repository
// in lower case (GitHub reads them so). Matched on the raw text, case,
// %2F, //, :443 or cyberbotics/../evil/ got past blockedRepositories. A
// URL already in that form is returned as is, allocating nothing.
func normalURL(raw string) string {
	if isNormal(raw) {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return raw
	}
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	p := path.Clean("/" + u.Path)
	if strings.HasSuffix(u.Path, "/") && p != "/" {
		p += "/"
	}
	if host == "github.com" {
		p = lowerOwnerRepo(p)
	}
	out := scheme + "://" + host + p
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

// lowerOwnerRepo lowers the first two segments of an absolute path.
func lowerOwnerRepo(p string) string {
	end := len(p)
	if i := strings.IndexByte(p[1:], '/'); i >= 0 {
		if j := strings.IndexByte(p[i+2:], '/'); j >= 0 {
			end = i + 2 + j
		}
	}
	return strings.ToLower(p[:end]) + p[end:]
}

// isNormal reports whether raw needs no change: the common case, checked
// without allocating.
func isNormal(raw string) bool {
	i := strings.Index(raw, "://")
	if i <= 0 {
		return true // no scheme and host: matched as written
	}
	for _, c := range raw[:i] {
		if c >= 'A' && c <= 'Z' {
			return false
		}
	}
	rest := raw[i+3:]
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		slash = len(rest)
	}
	host, p := rest[:slash], rest[slash:]
	if q := strings.IndexAny(p, "?#"); q >= 0 {
		p = p[:q]
	}
	if strings.ContainsAny(host, ":@%ABCDEFGHIJKLMNOPQRSTUVWXYZ") || strings.ContainsRune(p, '%') ||
		strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		return false
	}
	if host == "github.com" {
		segs := 0
		for j := 1; j < len(p) && segs < 2; j++ {
			switch c := p[j]; {
			case c == '/':
				segs++
			case c >= 'A' && c <= 'Z':
				return false
			}
		}
	}
	return true
}

// normalized is sh with its prefixes in normalURL's form.
func (sh *Sharing) normalized() *Sharing {
	if sh == nil {
		return nil
	}
	out := *sh
	out.Allowed = normalAll(sh.Allowed)
	out.Blocked = normalAll(sh.Blocked)
	return &out
}

func normalAll(prefixes []string) []string {
	out := prefixes
	for i, p := range prefixes {
		if n := normalURL(p); n != p {
			if &out[0] == &prefixes[0] {
				out = append([]string(nil), prefixes...)
			}
			out[i] = n
		}
	}
	return out
}
