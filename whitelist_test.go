package customauth

import (
	"strings"
	"testing"
)

func TestWhitelistAllows(t *testing.T) {
	w, err := compileWhitelist([]string{
		"example.com",
		"*.example.org",
		"https://secure.example.net:8443",
		"http://plain.example.net",
		"port.example.net:8080",
		"Upper.Example.IO.",
		"bücher.example",
		"*.xn--caf-dma.example", // *.café.example
		"[::1]",
		"127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		origin string
		want   bool
	}{
		// Exact host, any scheme, any port.
		{"https://example.com", true},
		{"http://example.com", true},
		{"https://example.com:8443", true},
		{"HTTPS://EXAMPLE.COM", true},
		{"https://example.com.", true},
		// Never a suffix or substring.
		{"https://evil-example.com", false},
		{"https://example.com.evil.net", false},
		{"https://example.com@evil.net", false},
		{"https://evil.net@example.com", false}, // any user information is refused
		{"https://sub.example.com", false},
		{"https://example.co", false},
		{"https://xexample.com", false},
		// Wildcards: any depth, not the apex.
		{"https://a.example.org", true},
		{"https://a.b.c.example.org", true},
		{"https://example.org", false},
		{"https://a.example.org.evil.net", false},
		{"https://aexample.org", false},
		// Scheme and port when the entry has them; default ports count.
		{"https://secure.example.net:8443", true},
		{"http://secure.example.net:8443", false},
		{"https://secure.example.net", false},
		{"http://plain.example.net", true},
		{"http://plain.example.net:8080", true},
		{"https://plain.example.net", false},
		{"http://port.example.net:8080", true},
		{"https://port.example.net:8080", true},
		{"http://port.example.net", false},
		// Case, trailing dot, IDN in both directions.
		{"https://upper.example.io", true},
		{"https://xn--bcher-kva.example", true},
		{"https://BÜCHER.example", true},
		{"https://bücher.example", true},
		{"https://a.café.example", true},
		{"https://a.xn--caf-dma.example", true},
		{"https://café.example", false},
		// IP addresses.
		{"http://[::1]:8080", true},
		{"http://127.0.0.1:3000", true},
		{"http://127.0.0.2", false},
		// Referer URLs: only scheme, host and port count.
		{"https://example.com/page?q=1#x", true},
		{"https://evil.net/https://example.com", false},
		{"https://evil.net?https://example.com", false},
		{"https://evil.net#@example.com", false},
		// Nothing matches these.
		{"null", false},
		{"", false},
		{"example.com", false},
		{"//example.com", false},
		{"://example.com", false},
		{"https://", false},
		{"ftp://example.com", false},
		{"javascript:alert(1)", false},
		{"file:///etc/passwd", false},
		{"https://exa mple.com", false},
		{"https://example.com:0", false},
		{"https://example.com:65536", false},
		{"https://example.com:abc", false},
		{"https://example.com:", false},
		{"https://example..com", false},
		{"https://.example.com", false},
		{"https://example.com\\@evil.net", false},
		{"https://[::1", false},
		{"https://\x00example.com", false},
	} {
		if got := w.allows(tc.origin); got != tc.want {
			t.Errorf("allows(%q) = %v, want %v", tc.origin, got, tc.want)
		}
	}
}

func TestCompileWhitelistErrors(t *testing.T) {
	bad := []string{"", "*", "*.com", "foo.*.example.com", "*example.com", "ftp://example.com", "example.com/path",
		"user@example.com", "example.com:99999", "example.com:", "exa mple.com", "https://", "*.[::1]", "a..b.com"}
	w, err := compileWhitelist(append([]string{"good.example.com"}, bad...))
	if err == nil {
		t.Fatal("no error")
	}
	for _, entry := range bad {
		if !strings.Contains(err.Error(), `"`+entry+`"`) {
			t.Errorf("error does not name %q: %v", entry, err)
		}
	}
	if !w.allows("https://good.example.com") {
		t.Error("the valid entry was dropped")
	}
}

func TestParseWhitelistAnswer(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []string
	}{
		{`["a.example", "*.b.example"]`, []string{"a.example", "*.b.example"}},
		{`{"domains": ["a.example"]}`, []string{"a.example"}},
		{`{"data": ["a.example"], "status": true}`, []string{"a.example"}},
		{`[]`, []string{}},
		{`{"domains": []}`, []string{}},
	} {
		got, err := parseWhitelistAnswer([]byte(tc.body))
		if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: %v, %v", tc.body, got, err)
		}
	}
	for _, body := range []string{``, `null`, `{}`, `{"list": ["a"]}`, `[1, 2]`, `"a.example"`, `{"domains": "a.example"}`, `<html>`} {
		if got, err := parseWhitelistAnswer([]byte(body)); err == nil {
			t.Errorf("%s accepted: %v", body, got)
		}
	}
}

// FuzzWhitelistAllows checks, for any origin and entry, that matching never panics
// and never matches a host that is not the entry's host (or, for a wildcard, one of
// its subdomains).
func FuzzWhitelistAllows(f *testing.F) {
	for _, seed := range [][2]string{
		{"https://example.com", "example.com"},
		{"https://a.example.com", "*.example.com"},
		{"https://example.com.evil.net", "example.com"},
		{"https://example.com@evil.net", "example.com"},
		{"https://xn--bcher-kva.example", "bücher.example"},
		{"http://[::1]:80", "[::1]"},
		{"https://EXAMPLE.com.:443/p", "https://example.com:443"},
		{"null", "example.com"},
		{"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, origin, entry string) {
		w, err := compileWhitelist([]string{entry})
		if !w.allows(origin) {
			return
		}
		if err != nil {
			t.Fatalf("invalid entry %q matched %q", entry, origin)
		}
		_, host, _, ok := parseOrigin(origin)
		if !ok {
			t.Fatalf("unparsable origin %q matched %q", origin, entry)
		}
		entryHost, _, wildcard, _ := parseEntry(entry)
		if wildcard {
			if !strings.HasSuffix(host, "."+entryHost) {
				t.Fatalf("%q matched wildcard %q", origin, entry)
			}
		} else if host != entryHost {
			t.Fatalf("%q matched %q", origin, entry)
		}
	})
}

// FuzzParseWhitelistAnswer: any answer from a whitelist API is parsed or refused,
// never a panic.
func FuzzParseWhitelistAnswer(f *testing.F) {
	for _, seed := range []string{`["a.example"]`, `{"domains":["a"]}`, `{"data":["a"]}`, `{"domains":null}`, `[null]`, `{`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		list, err := parseWhitelistAnswer(body)
		if err == nil && list == nil {
			t.Fatal("nil list without an error")
		}
		_, _ = compileWhitelist(list)
	})
}

func BenchmarkWhitelistAllows(b *testing.B) {
	w, _ := compileWhitelist([]string{"example.com", "*.example.org", "https://secure.example.net:8443"})
	b.ReportAllocs()
	for b.Loop() {
		if !w.allows("https://shop.a.example.org") || w.allows("https://evil.example.com") {
			b.Fatal("wrong answer")
		}
	}
}
