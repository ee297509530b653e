package customauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// whitelist is a compiled domain whitelist. Hosts are kept in their canonical form
// (ASCII/punycode, lower case, no trailing dot; IPv6 addresses in brackets, RFC 5952
// form), so checking an origin is one map lookup for the host and one per parent
// domain for the wildcards: never a suffix or substring comparison, no regular
// expression, and no allocation for the lower-case ASCII origins browsers send.
type whitelist struct {
	exact     map[string][]originRule // host -> what the entries for it require
	wildcards map[string][]originRule // "example.com" for "*.example.com" -> ditto
}

// originRule is what an entry requires beyond its host; the zero value accepts any
// scheme and any port.
type originRule struct {
	scheme string // "http", "https", or "" for any
	port   uint16 // 0 for any
}

func matchRules(rules []originRule, scheme string, port uint16) bool {
	for _, r := range rules {
		if (r.scheme == "" || r.scheme == scheme) && (r.port == 0 || r.port == port) {
			return true
		}
	}
	return false
}

// compileWhitelist compiles whitelist entries:
//
//   - `example.com`: exactly that host, any scheme, any port;
//   - `*.example.com`: its subdomains at any depth, not example.com itself;
//   - `https://example.com`, `example.com:8443`, `http://*.example.com:8080`: the same,
//     also requiring that scheme and/or port (an origin without a port has its
//     scheme's default one, so `example.com:443` matches `https://example.com`);
//   - internationalised names in Unicode or punycode, any case, a trailing dot, and a
//     trailing "/" (an origin written as a URL);
//   - IP addresses: `127.0.0.1`, `[::1]`, `::1` (brackets are needed with a port).
//
// A wildcard must be the whole first label and cover a domain that one owner controls:
// `*.com`, `*.co.uk` or `*.github.io` (public suffixes, where anyone can register a
// name) and `*.<IP address>` are refused; `*.localhost` is allowed, since those names
// are this machine. Only http and https schemes are accepted, and no path, query,
// fragment or user information.
//
// The returned whitelist holds every valid entry even when the error (naming each
// invalid entry) is not nil: a list fetched from an API keeps working when one of its
// entries is wrong, while a configuration treats the error as fatal.
func compileWhitelist(entries []string) (*whitelist, error) {
	w := &whitelist{exact: map[string][]originRule{}, wildcards: map[string][]originRule{}}
	var errs []error
	for _, entry := range entries {
		host, wildcard, rule, err := parseEntry(entry)
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

// parseEntry parses one whitelist entry into its canonical host (the base domain of a
// wildcard) and what it requires of the scheme and port.
func parseEntry(entry string) (host string, wildcard bool, rule originRule, err error) {
	s := strings.TrimSpace(entry)
	if s == "" {
		return "", false, rule, errors.New("empty entry")
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		rule.scheme = strings.ToLower(scheme)
		if rule.scheme != "http" && rule.scheme != "https" {
			return "", false, rule, fmt.Errorf("scheme %q: only http and https are allowed", scheme)
		}
		s = rest
	}
	s = strings.TrimSuffix(s, "/")
	if strings.ContainsAny(s, "/?#@\\") {
		return "", false, rule, errors.New("only a host, optionally with scheme and port, is allowed (no path, query, fragment or user information)")
	}
	s, wildcard = strings.CutPrefix(s, "*.")
	var port string
	if !strings.HasPrefix(s, "[") && strings.Count(s, ":") > 1 {
		host = "[" + s + "]" // a bare IPv6 address, such as ::1
	} else if host, port, err = splitHostPort(s); err != nil {
		return "", false, rule, err
	}
	if port != "" {
		var ok bool
		if rule.port, ok = parsePort(port); !ok {
			return "", false, rule, fmt.Errorf("invalid port %q", port)
		}
	}
	if strings.Contains(host, "*") {
		return "", false, rule, errors.New("a wildcard is allowed only as the whole first label, as in *.example.com")
	}
	host, kind, err := normalizeHost(host)
	if err != nil {
		return "", false, rule, err
	}
	if wildcard {
		if kind != hostName {
			return "", false, rule, errors.New("a wildcard needs a domain name, not an IP address")
		}
		if suffix, _ := publicsuffix.PublicSuffix(host); suffix == host && host != "localhost" {
			return "", false, rule, fmt.Errorf("%s is a public suffix: *.%s would match domains of any owner", host, host)
		}
	}
	return host, wildcard, rule, nil
}

// allows reports whether origin, the value of an Origin header or a Referer URL (only
// its scheme, host and port count), is on the whitelist. `null`, an empty or
// unparsable origin, a scheme other than http and https, user information, and a host
// that is not a valid (internationalised) name or IP address match nothing.
func (w *whitelist) allows(origin string) bool {
	if w == nil {
		return false
	}
	o, ok := parseOrigin(origin)
	if !ok {
		return false
	}
	if matchRules(w.exact[o.host], o.scheme, o.port) {
		return true
	}
	if o.kind != hostName || len(w.wildcards) == 0 {
		return false
	}
	// Each parent domain: a.b.example.com looks up b.example.com, example.com, com.
	for i := 0; i < len(o.host); i++ {
		if o.host[i] == '.' && matchRules(w.wildcards[o.host[i+1:]], o.scheme, o.port) {
			return true
		}
	}
	return false
}

// originParts is what matching an origin looks at.
type originParts struct {
	scheme string // "http" or "https"
	host   string // canonical, as normalizeHost returns it
	kind   hostKind
	port   uint16 // the explicit port, else the scheme's default
}

// parseOrigin splits an origin (or a URL, whose path, query and fragment are ignored)
// into its scheme, canonical host and effective port.
func parseOrigin(origin string) (o originParts, ok bool) {
	scheme, rest, found := strings.Cut(origin, "://")
	if !found {
		return o, false
	}
	switch {
	case strings.EqualFold(scheme, "https"):
		o.scheme, o.port = "https", 443
	case strings.EqualFold(scheme, "http"):
		o.scheme, o.port = "http", 80
	default:
		return o, false
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	// Everything before an @ is user information (https://example.com@evil.net is
	// evil.net), and browsers read a backslash as a slash: rather than guess which host
	// such an origin means, it matches nothing.
	if strings.ContainsAny(authority, "@\\") {
		return o, false
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return o, false
	}
	if port != "" {
		if o.port, ok = parsePort(port); !ok {
			return o, false
		}
	}
	if o.host, o.kind, err = normalizeHost(host); err != nil {
		return o, false
	}
	return o, true
}

var (
	errNoHost      = errors.New("no host")
	errBadIPv6     = errors.New("invalid IPv6 address")
	errBadIPv4     = errors.New("invalid IPv4 address (a host ending in a number is an IP address)")
	errBadHostName = errors.New("invalid host name")
)

// splitHostPort splits host[:port] and [ipv6][:port]. The port is not checked; an
// empty one after a colon is an error.
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errBadIPv6
		}
		host, rest := s[:end+1], s[end+1:]
		if rest == "" {
			return host, "", nil
		}
		if rest[0] != ':' || len(rest) == 1 {
			return "", "", fmt.Errorf("invalid port %q", rest)
		}
		return host, rest[1:], nil
	}
	host = s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if port == "" {
			return "", "", errors.New("empty port")
		}
	}
	if host == "" {
		return "", "", errNoHost
	}
	return host, port, nil
}

// parsePort accepts the decimal numbers 1–65535 without leading zeros or sign.
func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// hostKind tells domain names, which wildcards can match, from IP addresses.
type hostKind uint8

const (
	hostName hostKind = iota
	hostIPv4
	hostIPv6
)

// hostProfile maps a host name to ASCII the way browsers do (UTS #46 as the WHATWG URL
// standard uses it): nontransitional, so "ß" stays, "_" allowed and hyphens anywhere,
// since the Origin a browser sends was made that way.
var hostProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.StrictDomainName(false),
	idna.CheckHyphens(false),
)

// normalizeHost returns a host's canonical form: an internationalised name in ASCII
// (punycode), lower case, without a trailing dot; an IPv6 address in brackets and
// RFC 5952 form. It does not allocate for a valid lower-case ASCII name.
func normalizeHost(host string) (string, hostKind, error) {
	if strings.HasPrefix(host, "[") {
		return normalizeIPv6(host)
	}
	if !isLowerASCIIName(host) {
		// Upper case, Unicode or punycode labels: map and validate. The mapping reads
		// invalid UTF-8 as U+FFFD without an error, so that is refused first.
		if !utf8.ValidString(host) {
			return "", 0, errBadHostName
		}
		ascii, err := hostProfile.ToASCII(host)
		if err != nil {
			return "", 0, fmt.Errorf("%w: %v", errBadHostName, err)
		}
		host = ascii
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", 0, errNoHost
	}
	if !isValidName(host) {
		return "", 0, errBadHostName
	}
	if endsInNumber(host) {
		// Browsers parse such a host as an IPv4 address and send it in dotted-decimal
		// form; anything else, such as 127.1 or 1.2.3.256, matches nothing.
		if addr, err := netip.ParseAddr(host); err != nil || !addr.Is4() {
			return "", 0, errBadIPv4
		}
		return host, hostIPv4, nil
	}
	return host, hostName, nil
}

// normalizeIPv6 canonicalises "[addr]"; zones and IPv4 addresses in brackets are refused.
func normalizeIPv6(host string) (string, hostKind, error) {
	if len(host) < 2 || host[len(host)-1] != ']' {
		return "", 0, errBadIPv6
	}
	inner := host[1 : len(host)-1]
	addr, err := netip.ParseAddr(inner)
	if err != nil || !addr.Is6() || addr.Zone() != "" {
		return "", 0, errBadIPv6
	}
	var buf [64]byte
	canonical := addr.AppendTo(buf[:0])
	if string(canonical) == inner {
		return host, hostIPv6, nil
	}
	return "[" + string(canonical) + "]", hostIPv6, nil
}

// isLowerASCIIName reports whether host can skip the IDNA mapping: it is made of lower
// case letters, digits, '-', '_' and '.', and has no punycode ("xn--") label to validate.
func isLowerASCIIName(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
		if c == 'x' && (i == 0 || host[i-1] == '.') && strings.HasPrefix(host[i:], "xn--") {
			return false
		}
	}
	return true
}

// isValidName checks an ASCII host name: 1–253 characters, labels of 1–63 lower case
// letters, digits, '-' and '_'.
func isValidName(host string) bool {
	if len(host) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			if label++; label > 63 {
				return false
			}
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		default:
			return false
		}
	}
	return label > 0
}

// endsInNumber reports whether the last label is a number (decimal, or hexadecimal
// with 0x), which makes a host an IPv4 address for browsers.
func endsInNumber(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if hex, ok := strings.CutPrefix(last, "0x"); ok {
		return strings.Trim(hex, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

// parseWhitelistAnswer decodes a whitelist API's answer: a JSON array of entries
// (strings), or an object with that array under "domains" or, failing that, "data".
// Anything else is an error.
func parseWhitelistAnswer(body []byte) ([]string, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("the whitelist answer is empty")
	}
	switch trimmed[0] {
	case '[':
		return decodeEntries(body)
	case '{':
		var object map[string]json.RawMessage
		if err := json.Unmarshal(body, &object); err != nil {
			return nil, fmt.Errorf("the whitelist answer is not valid JSON: %w", err)
		}
		for _, key := range []string{"domains", "data"} {
			if raw, ok := object[key]; ok && string(raw) != "null" {
				entries, err := decodeEntries(raw)
				if err != nil {
					return nil, fmt.Errorf("%q: %w", key, err)
				}
				return entries, nil
			}
		}
		return nil, errors.New(`the whitelist answer has no "domains" or "data" array`)
	}
	return nil, errors.New(`the whitelist answer is neither a JSON array of entries nor an object with one under "domains" or "data"`)
}

// decodeEntries decodes a JSON array of strings; a null or non-string element is an error.
func decodeEntries(raw []byte) ([]string, error) {
	var list []*string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("not an array of strings: %w", err)
	}
	if list == nil {
		return nil, errors.New("not an array of strings")
	}
	entries := make([]string, len(list))
	for i, e := range list {
		if e == nil {
			return nil, fmt.Errorf("element %d is null", i)
		}
		entries[i] = *e
	}
	return entries, nil
}
