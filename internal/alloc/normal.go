package alloc

import (
	"errors"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// normalURL is a world URL as a simulation server reads it, for matching
// repository prefixes (PROTOCOL §1.1), in one canonical form: white space
// around it dropped, backslashes read as slashes, http and https one
// scheme (https://, however many slashes followed the colon), the host
// percent-decoded, mapped as a browser maps it (IDNA, which folds
// full-width letters and 。 into ASCII), in lower case, without trailing
// dots or a leading www., the default port dropped (:0443 included), the
// path percent-decoded with its dot segments and doubled slashes resolved,
// and on github.com the owner and repository in lower case (GitHub reads
// them so). Matched on the raw text, each of those spellings got past
// blockedRepositories (issue 31). A URL that names an http(s) host but
// cannot be put in that form comes back as unreadable(raw), which every
// server with a blockedRepositories policy treats as blocked. A URL
// already in the form is returned as is, allocating nothing.
func normalURL(raw string) string {
	if isNormal(raw) {
		return raw
	}
	s := strings.ReplaceAll(strings.TrimSpace(raw), `\`, "/")
	web := false
	if i := strings.IndexByte(s, ':'); i > 0 {
		if sc := strings.ToLower(s[:i]); sc == "http" || sc == "https" {
			web = true
			rest := strings.TrimLeft(s[i+1:], "/")
			// The host percent-decoded (%67ithub.com), which url.Parse refuses.
			end := strings.IndexAny(rest, "/?#")
			if end < 0 {
				end = len(rest)
			}
			if authority, err := url.PathUnescape(rest[:end]); err == nil {
				rest = authority + rest[end:]
			}
			s = "https://" + rest
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		if web {
			return unreadable(raw)
		}
		return raw
	}
	scheme := strings.ToLower(u.Scheme)
	host, port := u.Hostname(), u.Port()
	if web {
		if host, err = canonicalHost(host); err != nil {
			return unreadable(raw)
		}
		if port != "" {
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 {
				return unreadable(raw)
			}
			if port = strconv.Itoa(n); n == 443 || n == 80 {
				port = ""
			}
		}
	} else {
		host = strings.ToLower(host)
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

// unreadablePrefix marks a URL normalURL could not read (unreadable).
const unreadablePrefix = "unreadable:"

// unreadable is the form of a URL that names a web host but cannot be
// read as one: no prefix matches it, and a server with a
// blockedRepositories policy treats it as blocked.
func unreadable(raw string) string { return unreadablePrefix + raw }

// isUnreadable reports whether url is unreadable's.
func isUnreadable(url string) bool { return strings.HasPrefix(url, unreadablePrefix) }

// canonicalHost is a URL's host as a browser resolves it: IDNA's lookup
// mapping (NFKC, full-width forms, ideographic full stops), lower case, no
// trailing dot, no leading www.
func canonicalHost(host string) (string, error) {
	if strings.HasPrefix(host, "[") || net.ParseIP(host) != nil {
		return strings.ToLower(host), nil
	}
	h, err := idna.Lookup.ToASCII(host)
	if err != nil {
		// A trailing dot is the root's: lookups accept it.
		if h, err = idna.Lookup.ToASCII(strings.TrimRight(host, ".")); err != nil {
			return "", err
		}
	}
	h = strings.TrimRight(strings.ToLower(h), ".")
	h = strings.TrimPrefix(h, "www.")
	if h == "" {
		return "", errors.New("empty host")
	}
	return h, nil
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
// without allocating. Anything that could be another spelling of a web
// URL is not.
func isNormal(raw string) bool {
	i := strings.Index(raw, "://")
	if i <= 0 {
		// No scheme and host: matched as written, unless it is http(s)
		// with too few slashes or white space before it.
		if len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t') {
			return false
		}
		if j := strings.IndexByte(raw, ':'); j == 4 || j == 5 {
			return !strings.EqualFold(raw[:j], "http") && !strings.EqualFold(raw[:j], "https")
		}
		return true
	}
	scheme := raw[:i]
	if scheme == "http" || strings.ContainsAny(raw, "\\ \t") {
		return false
	}
	for _, c := range scheme {
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
	if host == "" || strings.ContainsAny(host, ":@%ABCDEFGHIJKLMNOPQRSTUVWXYZ") || strings.HasSuffix(host, ".") ||
		strings.HasPrefix(host, "www.") || strings.ContainsRune(p, '%') ||
		strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		return false
	}
	for j := 0; j < len(host); j++ {
		if host[j] >= 0x80 { // an internationalised or full-width host: mapped first
			return false
		}
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
func normalized(sh *Sharing) *Sharing {
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
