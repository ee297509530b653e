package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/custom-auth/custom_auth/bench/fixture"
)

// ports are the loopback ports of a run, all from BASE_PORT.
type ports struct{ base int }

func (p ports) backend() int { return p.base }
func (p ports) api() int     { return p.base + 1 }
func (p ports) stats() int   { return p.base + 2 }
func (p ports) admin() int   { return p.base + 3 }

// site returns the port of the i-th site (A=0, B=1, ...).
func (p ports) site(i int) int { return p.base + 10 + i }

func (p ports) all(sites int) []int {
	all := []int{p.backend(), p.api(), p.stats(), p.admin()}
	for i := range sites {
		all = append(all, p.site(i))
	}
	return all
}

// siteKind is what a site does with a visitor's identity, which decides how the
// harness checks it.
type siteKind int

const (
	plainProxy    siteKind = iota // passes the request on as it came
	forwardAuth                   // asks the identity API (GET /check), copies X-User-Id
	customAuth                    // custom_auth: contact headers when verified
	staticContact                 // sets the contact headers of a verified request itself
	respondOK                     // answers without the backend
)

// site is one Caddy site of the benchmark.
type site struct {
	name string // "A", "B", ...
	what string // for the report
	port int
	kind siteKind
	// cached: a repeated request of the same visitor makes no identity API call.
	cached bool
	body   string // the directives of the site block
}

// verifiedToken is the fixed access token of the sites scenario; contactOfToken is the
// contact id the identity API answers for it.
const contactOfToken = "2"

var verifiedToken = fixture.Token(contactOfToken)

// The sites, by name; siteOrder is the order of a round.
const siteOrder = "ABCDEH"

func benchSites(p ports) map[string]site {
	proxy := fmt.Sprintf("reverse_proxy 127.0.0.1:%d", p.backend())
	customAuthSite := func(extra ...string) string {
		lines := append([]string{
			fmt.Sprintf("auth_url http://127.0.0.1:%d/ca", p.api()),
			"whitelist shop.example.com",
		}, extra...)
		return "custom_auth {\n\tbot bench {\n\t\t" + strings.Join(lines, "\n\t\t") + "\n\t}\n}\n" + proxy
	}
	sites := map[string]site{
		"A": {what: "reverse_proxy", kind: plainProxy, body: proxy},
		"B": {what: "forward_auth + reverse_proxy", kind: forwardAuth, body: fmt.Sprintf(
			"forward_auth 127.0.0.1:%d {\n\turi /check\n\tcopy_headers X-User-Id\n}\n%s", p.api(), proxy)},
		"C": {what: "custom_auth, warm cache", kind: customAuth, cached: true, body: customAuthSite()},
		// negative_ttl 0 too: with cache_ttl 0 alone a rejection would still be cached.
		"D": {what: "custom_auth, cache_ttl 0", kind: customAuth, body: customAuthSite("cache_ttl 0", "negative_ttl 0")},
		"E": {what: `respond "ok"`, kind: respondOK, body: `respond "ok"`},
		"H": {what: "reverse_proxy + static contact headers", kind: staticContact, body: staticContactHeaders() + proxy},
	}
	for i, name := range siteOrder {
		s := sites[string(name)]
		s.name, s.port = string(name), p.site(i)
		sites[string(name)] = s
	}
	return sites
}

// staticContactHeaders is site H's request_header lines: what a verified request of C hands
// to the backend (the contact headers, the token removed), with no work to find it.
func staticContactHeaders() string {
	var b strings.Builder
	b.WriteString("request_header -X-Access-Token\n")
	h := fixture.ContactHeaders(contactOfToken)
	for _, name := range slices.Sorted(maps.Keys(h)) {
		// Backticks keep the metadata's quotes; Caddy leaves the braces of a value
		// that is no known placeholder as they are.
		fmt.Fprintf(&b, "request_header %s `%s`\n", name, h.Get(name))
	}
	return b.String()
}

// caddyfile is a Caddyfile that serves the sites on 127.0.0.1, with the admin API on a
// loopback port when adminPort is not 0.
func caddyfile(adminPort int, sites ...site) string {
	var b strings.Builder
	admin := "off"
	if adminPort != 0 {
		admin = fmt.Sprintf("127.0.0.1:%d", adminPort)
	}
	fmt.Fprintf(&b, "{\n\tadmin %s\n\tpersist_config off\n\tauto_https off\n}\n", admin)
	for _, s := range sites {
		fmt.Fprintf(&b, "\n# %s: %s\nhttp://:%d {\n\tbind 127.0.0.1\n\t%s\n}\n",
			s.name, s.what, s.port, strings.ReplaceAll(s.body, "\n", "\n\t"))
	}
	return b.String()
}
