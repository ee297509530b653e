package customauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// whitelist is a compiled domain whitelist. Hosts are kept in their ASCII (punycode),
// lower-case form without a trailing dot, so matching a request is two map lookups per
// label of the origin's host and never a suffix or substring comparison.
type whitelist struct {
	exact     map[string][]originRule // host -> rules
	wildcards map[string][]originRule // "example.com" for "*.example.com" -> rules
}

// originRule is what an entry requires beyond the host; empty means any.
type originRule struct {
	scheme string
	port   string
}

func (r originRule) matches(scheme, port string) bool {
	return (r.scheme == "" || r.scheme == scheme) && (r.port == "" || r.port == port)
}

// compileWhitelist compiles entries such as `example.com`, `*.example.com` (subdomains at
// any depth, not the apex) and `https://example.com:8443`. Invalid entries are named in
// the error; the valid ones are compiled all the same, so a list fetched from an API
// keeps working when one entry is wrong.
func compileWhitelist(entries []string) (*whitelist, error) {
	w := &whitelist{exact: map[string][]originRule{}, wildcards: map[string][]originRule{}}
	var errs []error
	for _, entry := range entries {
		host, rule, wildcard, err := parseEntry(entry)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %q: %w", entry, err))
			continue
		}
		if wildcard {
			w.wildcards[host] = append(w.wildcards[host], rule)
		} else {
			w.exact[host] = append(w.exact[host], rule)
		}
	}
	return w, errors.Join(errs...)
}

func parseEntry(entry string) (host string, rule originRule, wildcard bool, err error) {
	rest := strings.TrimSpace(entry)
	if scheme, after, ok := strings.Cut(rest, "://"); ok {
		rule.scheme = strings.ToLower(scheme)
		if rule.scheme != "http" && rule.scheme != "https" {
			return "", rule, false, errors.New("the scheme must be http or https")
		}
		rest = after
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "/?#@ \t") {
		return "", rule, false, errors.New("only a domain, optionally with scheme and port, is allowed (no path, query or user)")
	}
	if after, ok := strings.CutPrefix(rest, "*."); ok {
		wildcard, rest = true, after
	}
	host, rule.port, err = splitHostPort(rest)
	if err != nil {
		return "", rule, false, err
	}
	if strings.Contains(host, "*") {
		return "", rule, false, errors.New("a wildcard must be the first label, as in *.example.com")
	}
	if host, err = normalizeHost(host); err != nil {
		return "", rule, false, err
	}
	if wildcard && (!strings.Contains(host, ".") || strings.HasPrefix(host, "[")) {
		return "", rule, false, errors.New("a wildcard needs a domain of at least two labels, as in *.example.com")
	}
	return host, rule, wildcard, nil
}

// allows reports whether an origin (the Origin header, or a Referer URL: only its
// scheme, host and port count) is on the whitelist.
func (w *whitelist) allows(origin string) bool {
	scheme, host, port, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	for _, r := range w.exact[host] {
		if r.matches(scheme, port) {
			return true
		}
	}
	// Each parent domain of the host, for the wildcards: a.b.example.com looks up
	// b.example.com, then example.com, then com.
	for i := 0; i < len(host); i++ {
		if host[i] != '.' {
			continue
		}
		for _, r := range w.wildcards[host[i+1:]] {
			if r.matches(scheme, port) {
				return true
			}
		}
	}
	return false
}

// parseOrigin splits an origin into its scheme, normalised host and effective port.
// `null`, an empty origin, anything but http and https, user information and invalid
// hosts give ok false. It does not allocate for the usual lower-case ASCII origin.
func parseOrigin(origin string) (scheme, host, port string, ok bool) {
	i := strings.Index(origin, "://")
	if i <= 0 {
		return "", "", "", false
	}
	switch {
	case strings.EqualFold(origin[:i], "https"):
		scheme, port = "https", "443"
	case strings.EqualFold(origin[:i], "http"):
		scheme, port = "http", "80"
	default:
		return "", "", "", false
	}
	authority := origin[i+3:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	if strings.ContainsAny(authority, "@\\") {
		return "", "", "", false // user information: example.com@evil.net is evil.net
	}
	host, explicitPort, err := splitHostPort(authority)
	if err != nil {
		return "", "", "", false
	}
	if explicitPort != "" {
		port = explicitPort
	}
	if host, err = normalizeHost(host); err != nil {
		return "", "", "", false
	}
	return scheme, host, port, true
}

// splitHostPort splits host[:port] and [ipv6][:port]; a port must be 1–65535.
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("unterminated IPv6 address")
		}
		host, s = s[:end+1], s[end+1:]
		if s == "" {
			return host, "", nil
		}
		if s[0] != ':' {
			return "", "", errors.New("junk after the IPv6 address")
		}
		port = s[1:]
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
	} else {
		host = s
	}
	if port != "" || strings.HasSuffix(s, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return "", "", fmt.Errorf("invalid port %q", port)
		}
	}
	if host == "" {
		return "", "", errors.New("no host")
	}
	return host, port, nil
}

// hostProfile converts internationalised names to their ASCII form and checks the
// result is a valid host name.
var hostProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false), idna.ValidateLabels(true), idna.VerifyDNSLength(true))

// normalizeHost lower-cases a host, drops a trailing dot and converts an
// internationalised name to punycode.
func normalizeHost(host string) (string, error) {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", errors.New("no host")
	}
	if strings.HasPrefix(host, "[") {
		inner := host[1 : len(host)-1]
		if !isIPv6(inner) {
			return "", errors.New("invalid IPv6 address")
		}
		return strings.ToLower(host), nil
	}
	if isPlainHost(host) {
		return host, nil
	}
	ascii, err := hostProfile.ToASCII(host)
	if err != nil {
		return "", fmt.Errorf("invalid host: %v", err)
	}
	if !isPlainHost(ascii) {
		return "", errors.New("invalid host")
	}
	return ascii, nil
}

// isPlainHost accepts lower-case ASCII labels of letters, digits, '-' and '_', with no
// empty label.
func isPlainHost(host string) bool {
	if host == "" || host[0] == '.' || host[len(host)-1] == '.' || len(host) > 253 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.':
			if host[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func isIPv6(s string) bool {
	if !strings.Contains(s, ":") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '.') {
			return false
		}
	}
	return true
}

// parseWhitelistAnswer decodes a whitelist API's answer: a JSON array of entries, or
// an object with the array under "domains" or "data".
func parseWhitelistAnswer(body []byte) ([]string, error) {
	var list []string
	if err := json.Unmarshal(body, &list); err == nil && list != nil {
		return list, nil
	}
	var wrapped struct {
		Domains []string `json:"domains"`
		Data    []string `json:"data"`
	}
	if err := json.Unmarshal(body, &wrapped); err != nil {
		return nil, errors.New("the whitelist answer is neither a JSON array of domains nor an object with one under domains or data")
	}
	switch {
	case wrapped.Domains != nil:
		return wrapped.Domains, nil
	case wrapped.Data != nil:
		return wrapped.Data, nil
	}
	return nil, errors.New("the whitelist answer has no domains or data array")
}
