package customauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestCompileValue(t *testing.T) {
	t.Setenv("CA_TEST_VALUE", "from-env")
	r := httptest.NewRequest("GET", "/p?bot=q1", nil)
	r.Header.Set("X-Bot-Id", "h1")
	r.Header.Set("Authorization", "Bearer t")
	repl := caddyhttp.NewTestReplacer(r)

	for _, tc := range []struct {
		config, want string
		header       string // the fast path taken
	}{
		{"{http.request.header.X-Bot-Id}", "h1", "X-Bot-Id"},
		{"{http.request.header.x-bot-id}", "h1", "X-Bot-Id"},
		{"{http.request.header.X-Missing}", "", "X-Missing"},
		{"{http.request.uri.query.bot}", "q1", ""},
		{"bot-{http.request.header.X-Bot-Id}", "bot-h1", ""},
		{"{env.CA_TEST_VALUE}", "from-env", ""},
		{"literal", "literal", ""},
		{"{http.request.header.Authorization}", "Bearer t", "Authorization"},
	} {
		src := compileValue(tc.config, caddy.NewReplacer())
		if src.header != tc.header {
			t.Errorf("%s: header fast path %q, want %q", tc.config, src.header, tc.header)
		}
		if got := src.value(r, repl); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.config, got, tc.want)
		}
	}
}

func TestSourcesJSON(t *testing.T) {
	for _, tc := range []struct {
		json string
		want Sources
	}{
		{`"{http.request.header.A}"`, Sources{"{http.request.header.A}"}},
		{`["{http.request.header.A}","{http.request.uri.query.a}"]`, Sources{"{http.request.header.A}", "{http.request.uri.query.a}"}},
	} {
		var got Sources
		if err := json.Unmarshal([]byte(tc.json), &got); err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, %v", tc.json, got, err)
		}
		out, _ := json.Marshal(got)
		if string(out) != tc.json {
			t.Errorf("%s written back as %s", tc.json, out)
		}
	}
	var s Sources
	if err := json.Unmarshal([]byte(`{"a":1}`), &s); err == nil {
		t.Error("an object was accepted as sources")
	}
}

func TestFirstNonEmptySourceWins(t *testing.T) {
	srcs := compileSources(Sources{"{http.request.header.X-Access-Token}", "{http.request.uri.query.access_token}", "{http.request.cookie.ca_token}"}, caddy.NewReplacer())
	for _, tc := range []struct {
		target, header, cookie, want string
	}{
		{"/", "h", "", "h"},
		{"/?access_token=q", "", "ca_token=c", "q"},
		{"/", "", "ca_token=c", "c"},
		{"/?access_token=q", "h", "ca_token=c", "h"},
		{"/", "", "", ""},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		if tc.header != "" {
			r.Header.Set("X-Access-Token", tc.header)
		}
		if tc.cookie != "" {
			r.Header.Set("Cookie", tc.cookie)
		}
		if got := srcs.value(r, caddyhttp.NewTestReplacer(r)); got != tc.want {
			t.Errorf("%+v: %q", tc, got)
		}
	}
}

func TestRemoveToken(t *testing.T) {
	srcs := compileSources(Sources{"{http.request.header.X-Access-Token}", "{http.request.uri.query.access_token}", "{http.request.cookie.ca_token}"}, caddy.NewReplacer())
	r := httptest.NewRequest("GET", "/ws?a=1&access_token=q;b=2&%61ccess_token=r&c", nil)
	r.Header.Set("X-Access-Token", "h")
	r.Header.Add("Cookie", "x=1; ca_token=c")
	r.Header.Add("Cookie", "CA_TOKEN=d")
	srcs.removeFrom(r)
	if _, ok := r.Header["X-Access-Token"]; ok {
		t.Error("header kept")
	}
	if r.URL.RawQuery != "a=1;b=2&c" || r.RequestURI != "/ws?a=1;b=2&c" {
		t.Errorf("query %q, request URI %q", r.URL.RawQuery, r.RequestURI)
	}
	if got := r.Header.Values("Cookie"); !slices.Equal(got, []string{"x=1"}) {
		t.Errorf("cookies %q", got)
	}
	// A template mixing text and placeholders cannot be taken out of the request.
	if src := compileValue("Bearer {http.request.header.X-T}", caddy.NewReplacer()); src.removable() {
		t.Error("a template is not removable")
	}
}

// FuzzWithoutQueryParam: whatever the query, no parameter that Go's url.ParseQuery
// would read under the removed name is left, and every other parameter stays.
func FuzzWithoutQueryParam(f *testing.F) {
	for _, seed := range []string{"a=1&access_token=x", "%61ccess_token=x;b", "access_token", "&&access_token=&", "a=%zz&access_token=1", "access_token=1;access_token=2"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		kept := withoutQueryParam(raw, "access_token")
		values, _ := url.ParseQuery(kept)
		if _, ok := values["access_token"]; ok {
			t.Fatalf("%q kept access_token: %q", raw, kept)
		}
		for segment := range strings.FieldsFuncSeq(raw, func(r rune) bool { return r == '&' || r == ';' }) {
			if queryKey(segment) != "access_token" && !strings.Contains(kept, segment) {
				t.Fatalf("%q lost %q: %q", raw, segment, kept)
			}
		}
	})
}

// FuzzWithoutCookie: Go's cookie parser never finds the removed cookie in what is
// left, under any case of its name.
func FuzzWithoutCookie(f *testing.F) {
	for _, seed := range []string{"a=1; ca_token=x", "CA_TOKEN=x", "ca_token", ";;ca_token=1;", `ca_token="x"; b=2`} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		kept := withoutCookie(line, "ca_token")
		r := &http.Request{Header: http.Header{"Cookie": {kept}}}
		for _, c := range r.Cookies() {
			if strings.EqualFold(c.Name, "ca_token") {
				t.Fatalf("%q kept %q: %q", line, c.Name, kept)
			}
		}
	})
}
