package customauth

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestWhitelistAllows(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []string
		allowed []string
		refused []string
	}{{
		name:    "exact host: any scheme, any port, never a suffix or substring",
		entries: []string{"example.com"},
		allowed: []string{
			"https://example.com", "http://example.com", "https://example.com:8443",
			"https://example.com:443", "http://example.com:80", "https://example.com/",
			"HTTPS://EXAMPLE.COM", "https://Example.Com", "https://example.com.",
			"https://EXAMPLE.COM.:8443",
		},
		refused: []string{
			"https://evil-example.com", "https://example.com.evil.net", "https://example.com@evil.net",
			"https://evil.net@example.com", "https://user:pass@example.com", "https://@example.com",
			"https://sub.example.com", "https://a.b.example.com", "https://xexample.com",
			"https://example.co", "https://example.comm", "https://example.com..",
			"https://example..com", "https://.example.com", "https://example.com\\@evil.net",
			"https://example.com%2eevil.net", "https://example%2ecom", "https://ex%61mple.com",
			"https://example.com\t", "https://\x00example.com", "https://example.com\x00.evil.net",
			"https://example.com\u3002evil.net", // ideographic full stop: a dot after mapping
			"https://example.com\uff20evil.net", // fullwidth @
		},
	}, {
		name:    "wildcard: subdomains at any depth, not the apex",
		entries: []string{"*.example.com"},
		allowed: []string{
			"https://shop.example.com", "https://shop.example.com:8443", "http://a.b.c.d.example.com",
			"https://SHOP.EXAMPLE.COM.", "https://_dmarc.example.com", "https://a-.example.com",
			"https://r3---sn-abc.example.com",
		},
		refused: []string{
			"https://example.com", "https://example.com.", "https://evil-example.com",
			"https://shopexample.com", "https://shop.example.com.evil.net", "https://example.com.evil.net",
			"https://.example.com", "https://a..example.com", "https://shop.example.com@evil.net",
			"https://evil.net?.example.com", "https://evil.net#.example.com", "https://evil.net/.example.com",
		},
	}, {
		name:    "SPEC example: the origin is a URL with a port",
		entries: []string{"example.com", "*.example.com"},
		allowed: []string{"https://shop.example.com:8443", "https://example.com"},
		refused: []string{"https://evil-example.com", "https://example.com.evil.net", "https://example.com@evil.net", "null", ""},
	}, {
		name:    "scheme and port when the entry has them",
		entries: []string{"https://secure.example.net:8443", "http://plain.example.net", "port.example.net:8080"},
		allowed: []string{
			"https://secure.example.net:8443", "HTTPS://SECURE.EXAMPLE.NET:8443/",
			"http://plain.example.net", "http://plain.example.net:8080",
			"http://port.example.net:8080", "https://port.example.net:8080",
		},
		refused: []string{
			"http://secure.example.net:8443", "https://secure.example.net", "https://secure.example.net:443",
			"https://secure.example.net:18443", "https://plain.example.net", "https://plain.example.net:80",
			"http://port.example.net", "https://port.example.net", "http://port.example.net:80800",
		},
	}, {
		name:    "default ports: an origin without a port has its scheme's",
		entries: []string{"https://std.example.net:443", "default.example.net:443", "http://old.example.net:80"},
		allowed: []string{
			"https://std.example.net", "https://std.example.net:443", "https://default.example.net",
			"http://default.example.net:443", "http://old.example.net", "http://old.example.net:80",
		},
		refused: []string{
			"http://std.example.net", "http://std.example.net:443", "http://default.example.net",
			"https://default.example.net:8443", "https://old.example.net:80", "http://old.example.net:8080",
		},
	}, {
		name:    "wildcard with scheme and port",
		entries: []string{"http://*.wild.example.net", "*.ports.example.net:8443"},
		allowed: []string{"http://a.wild.example.net:3000", "https://a.b.ports.example.net:8443"},
		refused: []string{"https://a.wild.example.net", "http://wild.example.net", "https://a.ports.example.net", "https://ports.example.net:8443"},
	}, {
		name:    "upper case, trailing dot and trailing slash in entries",
		entries: []string{"Upper.Example.IO.", "HTTPS://Slash.Example.IO/"},
		allowed: []string{"https://upper.example.io", "http://UPPER.example.io.:81", "https://slash.example.io"},
		refused: []string{"https://upper.example.io.evil.net", "http://slash.example.io"},
	}, {
		name:    "IDN: entry in Unicode, origin in punycode or Unicode",
		entries: []string{"bücher.example", "*.Straße.example"},
		allowed: []string{
			"https://xn--bcher-kva.example", "https://XN--BCHER-KVA.EXAMPLE", "https://bücher.example",
			"https://BÜCHER.example", "https://ｂücher.example", // fullwidth b
			"https://bü\u00adcher.example", // a soft hyphen is ignored
			"https://shop.xn--strae-oqa.example", "https://a.b.straße.example",
		},
		refused: []string{
			"https://bucher.example", "https://xn--bcher-kva.example.evil.net", "https://sub.bücher.example",
			"https://shop.strasse.example", // nontransitional: ß is not ss
			"https://xn--strae-oqa.example",
		},
	}, {
		name:    "IDN: entry in punycode, origin in Unicode or punycode",
		entries: []string{"xn--caf-dma.example", "*.XN--80AKHBYKNJ4F.example"}, // café, испытание
		allowed: []string{
			"https://café.example", "https://CAFÉ.example", "https://xn--caf-dma.example",
			"https://a.испытание.example", "https://a.xn--80akhbyknj4f.example",
		},
		refused: []string{"https://cafe.example", "https://испытание.example", "https://a.cafe.example"},
	}, {
		name:    "invalid internationalised origins match nothing",
		entries: []string{"*.example.com", "xn--caf-dma.example"},
		refused: []string{
			// Invalid punycode, punycode of plain ASCII, a zero width joiner out of
			// context, a label breaking the bidi rule, invalid UTF-8.
			"https://xn--zz.example.com", "https://xn--example-.example.com", "https://a\u200d.example.com",
			"https://\u05d0a.example.com", "https://\xff.example.com", "https://a\xed\xa0\x80.example.com",
			"https://\ufffd.example.com", "https://a\u00a0b.example.com", "https://\uff0e.example.com",
		},
	}, {
		name:    "underscores and hyphens as browsers accept them",
		entries: []string{"my_app.example.io", "-dash-.example.io"},
		allowed: []string{"https://my_app.example.io", "https://MY_APP.example.io", "https://-dash-.example.io"},
		refused: []string{"https://myapp.example.io", "https://dash.example.io"},
	}, {
		name:    "IP addresses; IPv6 with or without brackets in the entry",
		entries: []string{"127.0.0.1", "[::1]", "2001:DB8::1", "[2001:db8::2]:8443", "http://10.0.0.1:8080"},
		allowed: []string{
			"http://127.0.0.1", "http://127.0.0.1:3000", "http://127.0.0.1./",
			"http://[::1]", "http://[::1]:8080", "https://[0:0:0:0:0:0:0:1]", "http://[::0001]",
			"http://[2001:db8::1]", "https://[2001:0DB8:0:0::1]:444",
			"https://[2001:db8::2]:8443", "http://10.0.0.1:8080",
		},
		refused: []string{
			"http://127.0.0.2", "http://127.1", "http://0x7f.0.0.1", "http://127.000.000.001",
			"http://2130706433", "http://[::ffff:127.0.0.1]", "http://[127.0.0.1]", "http://::1",
			"http://[::1]x", "http://[::1", "http://[fe80::1%25eth0]", "http://[::2]",
			"https://[2001:db8::2]", "http://10.0.0.1", "https://10.0.0.1:8080", "http://1.127.0.0.1",
		},
	}, {
		name:    "a wildcard never matches an IP address",
		entries: []string{"*.shop.localhost", "*.localhost"},
		allowed: []string{"http://a.shop.localhost:8081", "http://shop.localhost:8081"},
		refused: []string{"http://localhost", "http://127.0.0.1", "http://[::1]"},
	}, {
		name:    "Referer: only scheme, host and port count",
		entries: []string{"example.com", "https://secure.example.net:8443"},
		allowed: []string{
			"https://example.com/page?q=1#top", "https://example.com/a/b/c", "https://example.com?x=https://evil.net",
			"https://example.com#@evil.net", "https://example.com/@evil.net", "https://example.com?@evil.net",
			"https://secure.example.net:8443/checkout?step=2",
		},
		refused: []string{
			"https://evil.net/https://example.com", "https://evil.net/?https://example.com",
			"https://evil.net?https://example.com", "https://evil.net#https://example.com",
			"https://evil.net/example.com", "https://evil.net:443/example.com:443",
			"https://secure.example.net/checkout:8443", "https://evil.net\\example.com",
			"https://evil.net\\@example.com",
		},
	}, {
		name:    "null, empty and garbage match nothing",
		entries: []string{"example.com", "*.example.com", "null", "localhost"},
		allowed: []string{"http://localhost:3000"},
		refused: []string{
			"null", "NULL", "", " ", "example.com", "//example.com", "://example.com", "://", "http://",
			"https://", "http:///example.com", "http://exa mple.com", " https://example.com", "https:example.com",
			"https:/example.com", "javascript:alert(1)", "javascript://example.com/%0aalert(1)",
			"ftp://example.com", "ws://example.com", "wss://example.com", "file:///etc/passwd",
			"data:text/html,x", "chrome-extension://example.com", "https//example.com",
			"https://example.com:", "https://example.com:0", "https://example.com:00443", "https://example.com:65536",
			"https://example.com:99999999999999999999", "https://example.com:-1", "https://example.com:+443",
			"https://example.com:443:443", "https://example.com:abc", "https://example.com: 443",
			"https://*.example.com", "https://a.*.example.com", "https://" + strings.Repeat("a", 64) + ".example.com",
			"https://" + strings.Repeat("a.", 130) + "example.com",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := compileWhitelist(tc.entries)
			if err != nil {
				t.Fatal(err)
			}
			for _, origin := range tc.allowed {
				if !w.allows(origin) {
					t.Errorf("allows(%q) = false, want true", origin)
				}
			}
			for _, origin := range tc.refused {
				if w.allows(origin) {
					t.Errorf("allows(%q) = true, want false", origin)
				}
			}
		})
	}
}

func TestWhitelistEmptyAndNil(t *testing.T) {
	var none *whitelist
	empty, err := compileWhitelist(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []*whitelist{none, empty} {
		if w.allows("https://example.com") {
			t.Error("an empty whitelist allowed an origin")
		}
	}
}

// TestWhitelistAllowsAllocations keeps the per-request check free of allocations for
// the lower-case ASCII origins browsers send.
func TestWhitelistAllowsAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	w, err := compileWhitelist([]string{"example.com", "*.example.org", "https://secure.example.net:8443", "[::1]"})
	if err != nil {
		t.Fatal(err)
	}
	for _, origin := range []string{
		"https://example.com", "https://shop.a.example.org", "https://secure.example.net:8443/path?q",
		"https://evil.example.com", "http://[::1]:8080", "null", "https://example.com@evil.net",
	} {
		if n := testing.AllocsPerRun(100, func() { w.allows(origin) }); n != 0 {
			t.Errorf("allows(%q): %v allocations", origin, n)
		}
	}
}

func TestCompileWhitelistErrors(t *testing.T) {
	bad := []string{
		"", "   ", "*", "*.", "**", "*.com", "*.COM.", "*.co.uk", "*.github.io", "*.xn--p1ai", "*.рф",
		"foo.*.example.com", "*example.com", "**.example.com", "*.*.example.com", "example.*", "a*.example.com",
		"ftp://example.com", "javascript://example.com", "://example.com", "ws://example.com",
		"example.com/path", "https://example.com/path", "https://example.com//", "example.com?x=1",
		"example.com#frag", "user@example.com", "https://user:pass@example.com", "example.com\\evil",
		"example.com:0", "example.com:65536", "example.com:080", "example.com:http", "example.com:",
		"example.com:-1", "https://example.com:443:443", "exa mple.com", "https://", "https://:443",
		"*.[::1]", "*.::1", "*.127.0.0.1", "*.0.0.1", "a..b.com", ".example.com", "example.com..",
		"1.2.3.256", "127.1", "0x7f.0.0.1", "[::1", "[::1]x", "[1.2.3.4]", "[fe80::1%25eth0]", "fe80::1%eth0",
		"[::1]:", "[::1]:0", "xn--zz.example", "xn--example-.com", "a\u200d.example",
		strings.Repeat("a", 64) + ".example.com", strings.Repeat("a.", 127) + "com",
	}
	good := []string{
		"good.example.com", " spaced.example.com ", "*.localhost", "*.shop.localhost", "*.myapp.github.io",
		"*.example.co.uk", "::1", "[::1]:8080", "HTTPS://Example.COM:443/", "*.bücher.example",
		"http://*.example.net:8080", "com", "localhost", "10.0.0.1:8080", strings.Repeat("a", 63) + ".example.com",
	}
	w, err := compileWhitelist(append(slices.Clone(good), bad...))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, entry := range bad {
		if !strings.Contains(msg, strconv.Quote(entry)) {
			t.Errorf("the error does not name %q", entry)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != len(bad) {
		t.Errorf("%d errors for %d bad entries:\n%s", n, len(bad), msg)
	}
	for _, entry := range good {
		if _, err := compileWhitelist([]string{entry}); err != nil {
			t.Errorf("%q refused: %v", entry, err)
		}
	}
	for _, origin := range []string{
		"https://good.example.com", "https://spaced.example.com", "http://a.localhost", "http://x.shop.localhost",
		"https://a.myapp.github.io", "https://shop.example.co.uk", "http://[::1]", "https://example.com",
		"https://a.b.xn--bcher-kva.example", "http://a.example.net:8080",
	} {
		if !w.allows(origin) {
			t.Errorf("the valid entries were not all kept: %q refused", origin)
		}
	}
	if w.allows("https://a.com") || w.allows("https://a.github.io") || w.allows("https://example.co.uk") {
		t.Error("an invalid wildcard entry was kept")
	}
}

func TestParseWhitelistAnswer(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
	}{
		{`["a.example", "*.b.example"]`, []string{"a.example", "*.b.example"}},
		{` [ "a.example" ] `, []string{"a.example"}},
		{`{"domains": ["a.example"]}`, []string{"a.example"}},
		{`{"data": ["a.example"], "status": true, "message": "ok"}`, []string{"a.example"}},
		{`{"domains": ["a.example"], "data": ["b.example"]}`, []string{"a.example"}},
		{`{"domains": null, "data": ["b.example"]}`, []string{"b.example"}},
		{`{"data": ["a.example"], "extra": {"x": [1, null]}}`, []string{"a.example"}},
		{`["bad entry", ""]`, []string{"bad entry", ""}}, // decoded here; compileWhitelist judges the entries
		{`[]`, []string{}},
		{`{"domains": []}`, []string{}},
	} {
		got, err := parseWhitelistAnswer([]byte(tc.body))
		if err != nil || got == nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, %v; want %q", tc.body, got, err, tc.want)
		}
	}
	for _, body := range []string{
		``, ` `, `null`, `{}`, `{"list": ["a"]}`, `{"Domains2": ["a"]}`, `{"domains": null}`,
		`[1, 2]`, `["a", 1]`, `["a", null]`, `[["a"]]`, `[{"domain": "a"}]`, `"a.example"`, `true`, `42`,
		`{"domains": "a.example"}`, `{"domains": [1]}`, `{"data": {"domains": ["a"]}}`, `{"domains": {"a": 1}}`,
		`<html>`, `[`, `["a"`, `["a"] x`, `{"domains": ["a"]`, `["a",]`, "\xef\xbb\xbf[\"a\"]",
	} {
		if got, err := parseWhitelistAnswer([]byte(body)); err == nil {
			t.Errorf("%q accepted: %q", body, got)
		}
	}
}

// exampleList and wildcardList are the whitelists example.com and *.example.com, whose
// matches FuzzWhitelistAllows checks for any origin.
var (
	exampleList, _  = compileWhitelist([]string{"example.com"})
	wildcardList, _ = compileWhitelist([]string{"*.example.com"})
)

// FuzzWhitelistAllows checks, for any origin and entry, that matching never panics
// and never lets through a host other than the entry's (or, for a wildcard, one of its
// subdomains), that net/url reads an allowed origin the same way, and that an entry's
// own canonical origin is allowed.
func FuzzWhitelistAllows(f *testing.F) {
	for _, seed := range [][2]string{
		{"https://example.com", "example.com"},
		{"https://a.example.com", "*.example.com"},
		{"https://shop.example.com:8443", "https://shop.example.com:8443"},
		{"https://example.com.evil.net", "example.com"},
		{"https://evil-example.com", "example.com"},
		{"https://example.com@evil.net", "example.com"},
		{"https://example.com\\@evil.net", "example.com"},
		{"https://xn--bcher-kva.example", "bücher.example"},
		{"https://BÜCHER.example.", "*.example"},
		{"http://[::1]:80", "[::1]"},
		{"http://[0::1]", "::1"},
		{"http://127.0.0.1:8080/x", "127.0.0.1:8080"},
		{"https://EXAMPLE.com.:443/p?q#f", "https://example.com:443"},
		{"http://a.b.shop.localhost:8081", "*.shop.localhost"},
		{"null", "example.com"},
		{"javascript:alert(1)", "*.com"},
		{"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, origin, entry string) {
		// The ASCII fast path of normalizeHost must agree with the IDNA mapping.
		for _, s := range []string{origin, entry} {
			if isLowerASCIIName(s) {
				if ascii, err := hostProfile.ToASCII(s); err != nil || ascii != s {
					t.Fatalf("ToASCII(%q) = %q, %v; the fast path keeps it as it is", s, ascii, err)
				}
			}
		}

		o, parsed := parseOrigin(origin)
		if exampleList.allows(origin) && o.host != "example.com" {
			t.Fatalf("example.com allowed %q (host %q)", origin, o.host)
		}
		if wildcardList.allows(origin) && !strings.HasSuffix(o.host, ".example.com") {
			t.Fatalf("*.example.com allowed %q (host %q)", origin, o.host)
		}

		w, err := compileWhitelist([]string{entry})
		allowed := w.allows(origin)
		if allowed || exampleList.allows(origin) || wildcardList.allows(origin) {
			if !parsed {
				t.Fatalf("unparsable origin %q allowed", origin)
			}
			checkWithNetURL(t, origin, o)
		}
		if err != nil {
			if allowed {
				t.Fatalf("invalid entry %q allowed %q", entry, origin)
			}
			return
		}
		host, wildcard, rule, _ := parseEntry(entry)
		if allowed {
			if wildcard && !strings.HasSuffix(o.host, "."+host) || !wildcard && o.host != host {
				t.Fatalf("entry %q allowed %q (host %q)", entry, origin, o.host)
			}
			if rule.scheme != "" && rule.scheme != o.scheme || rule.port != 0 && rule.port != o.port {
				t.Fatalf("entry %q allowed %q: scheme or port differs", entry, origin)
			}
		}

		// The origin a browser would send for the entry is allowed.
		scheme, own := "https", host
		if rule.scheme != "" {
			scheme = rule.scheme
		}
		if wildcard {
			own = "a." + host
		}
		if rule.port != 0 {
			own += ":" + strconv.Itoa(int(rule.port))
		}
		if len(host) < 250 && !w.allows(scheme+"://"+own) {
			t.Fatalf("entry %q does not allow %q", entry, scheme+"://"+own)
		}
		if !wildcard && w.allows(scheme+"://x"+own) && host != "" && host[0] != '[' {
			t.Fatalf("entry %q allows %q", entry, scheme+"://x"+own)
		}
	})
}

// checkWithNetURL checks that net/url reads an allowed origin's scheme, host and port
// as parseOrigin did.
func checkWithNetURL(t *testing.T, origin string, o originParts) {
	t.Helper()
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatalf("allowed %q, which net/url refuses: %v", origin, err)
	}
	if u.User != nil || u.Scheme != o.scheme {
		t.Fatalf("allowed %q: net/url reads user %v, scheme %q", origin, u.User, u.Scheme)
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if h, _, err := normalizeHost(host); err != nil || h != o.host {
		t.Fatalf("allowed %q as host %q; net/url reads host %q", origin, o.host, u.Hostname())
	}
	if p := u.Port(); p != "" && p != strconv.Itoa(int(o.port)) {
		t.Fatalf("allowed %q as port %d; net/url reads %q", origin, o.port, p)
	}
}

// FuzzParseWhitelistAnswer: any answer from a whitelist API is parsed or refused,
// never a panic, and a parsed list is what encoding/json reads in the answer.
func FuzzParseWhitelistAnswer(f *testing.F) {
	for _, seed := range []string{
		`["a.example"]`, `{"domains":["a"]}`, `{"data":["a"]}`, `{"domains":null,"data":[]}`,
		`[null]`, `{`, `[1]`, `null`, `{"data":{"domains":["a"]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		list, err := parseWhitelistAnswer(body)
		if err != nil {
			return
		}
		if list == nil {
			t.Fatal("nil list without an error")
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%q accepted, but it is not JSON: %v", body, err)
		}
		_, _ = compileWhitelist(list)
	})
}

func BenchmarkWhitelistAllows(b *testing.B) {
	w, err := compileWhitelist([]string{
		"example.com", "*.example.org", "https://secure.example.net:8443", "[::1]", "bücher.example",
		"a.example", "b.example", "c.example", "*.d.example", "*.e.example",
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, origin string
		want         bool
	}{
		{"exact", "https://example.com", true},
		{"wildcard", "https://shop.a.example.org", true},
		{"scheme-port", "https://secure.example.net:8443", true},
		{"referer", "https://example.com/products/42?ref=mail#reviews", true},
		{"refused", "https://evil.example.com.evil.net", false},
		{"ipv6", "http://[::1]:8080", true},
		{"punycode", "https://xn--bcher-kva.example", true},
		{"null", "null", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if w.allows(bc.origin) != bc.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
