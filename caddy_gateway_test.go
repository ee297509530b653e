package customauth

// Integration tests, through a real Caddy, of what every Caddyfile shape and every
// request part must not get past: routing blocks, token sources and their removal,
// reloads, and identity answers that must not verify.

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestIntegrationRoutingBlocksRunTheModule: a top-level custom_auth runs before every
// routing and responding directive of its site, so spoofed contact headers never
// reach a backend behind `handle`, `handle_path` or `route`, and `respond` sees the
// outcome.
func TestIntegrationRoutingBlocksRunTheModule(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, "")+fmt.Sprintf(`
	http://localhost:9080 {
		handle /chat/* {
			reverse_proxy %[2]s
		}
		handle_path /api/* {
			reverse_proxy %[2]s
		}
		route /ws/* {
			reverse_proxy %[2]s
		}
		respond /health "{http.custom_auth.status}/{http.custom_auth.reason}"
		custom_auth {
			bot shop {
				auth_url %[1]s/ca
			}
		}
	}`, api.URL, strings.TrimPrefix(be.URL, "http://")), "caddyfile")

	for _, path := range []string{"/chat/send", "/api/send", "/ws/send"} {
		for _, token := range []string{"alice-token", "wrong-token"} {
			t.Run(path+" "+token, func(t *testing.T) {
				req := gatewayRequest(path, token, "https://shop.example.com")
				spoof(req)
				tester.AssertResponse(req, http.StatusOK, "backend")
				got, _ := be.received(t)
				want := map[string]string{"alice-token": "2", "wrong-token": ""}[token]
				if id := got.Header.Values("X-Contact-Id"); strings.Join(id, ",") != want {
					t.Errorf("backend got X-Contact-Id %q, want %q", id, want)
				}
				for name := range spoofedHeaders {
					if v := got.Header.Values(name); len(v) > 0 && v[0] == spoofedHeaders[name] {
						t.Errorf("spoofed %s reached the backend", name)
					}
				}
			})
		}
	}
	tester.AssertResponse(gatewayRequest("/health", "wrong-token", ""), http.StatusOK, "fallback/rejected")
}

// TestIntegrationTokenSources: the token comes from the first source that has it, a
// header, a query parameter or a cookie, and is removed from the request on every
// path unless pass_token is set. Everything else in the request stays as sent.
func TestIntegrationTokenSources(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, "")+fmt.Sprintf(`
	http://localhost:9080 {
		@passing path /pass/*
		custom_auth @passing {
			token {http.request.header.X-Access-Token} {http.request.uri.query.access_token} {http.request.cookie.ca_token}
			pass_token
			bot shop {
				auth_url %[1]s/ca
			}
		}
		@removing not path /pass/*
		custom_auth @removing {
			bot_id {http.request.header.X-Bot-Id} {http.request.uri.query.bot}
			token {http.request.header.X-Access-Token} {http.request.uri.query.access_token} {http.request.cookie.ca_token}
			bot shop {
				auth_url %[1]s/ca
			}
		}
		reverse_proxy %[2]s {
			header_up X-Outcome {http.custom_auth.status}/{http.custom_auth.reason}
		}
	}`, api.URL, strings.TrimPrefix(be.URL, "http://")), "caddyfile")

	for _, tc := range []struct {
		name, path, header, cookie, outcome string
		wantQuery, wantCookie               string
		wantHeader                          bool
	}{
		{name: "header", path: "/chat?room=1", header: "alice-token", outcome: "verified/", wantQuery: "room=1"},
		{name: "query", path: "/ws?room=1&access_token=alice-token&x=%2F", outcome: "verified/", wantQuery: "room=1&x=%2F"},
		{name: "query, bot id too", path: "/ws?bot=shop&access_token=alice-token", outcome: "verified/", wantQuery: "bot=shop"},
		{name: "query spelled with escapes", path: "/ws?%61ccess_token=alice-token&room=1", outcome: "verified/", wantQuery: "room=1"},
		{name: "query twice, separated by ;", path: "/ws?access_token=alice-token;room=1&access_token=x", outcome: "fallback/rejected", wantQuery: "room=1"},
		{name: "cookie name in another case", path: "/sse", cookie: "CA_Token=alice-token; lang=vi", outcome: "verified/", wantCookie: "lang=vi"},
		{name: "cookie", path: "/sse", cookie: "theme=dark; ca_token=alice-token; lang=vi", outcome: "verified/", wantCookie: "theme=dark; lang=vi"},
		{name: "cookie only", path: "/sse", cookie: "ca_token=alice-token", outcome: "verified/"},
		{name: "header wins over query", path: "/ws?access_token=wrong-token", header: "alice-token", outcome: "verified/"},
		{name: "fallback removes it too", path: "/ws?access_token=wrong-token&room=1", cookie: "ca_token=x", outcome: "fallback/rejected", wantQuery: "room=1"},
		{name: "pass_token keeps the header", path: "/pass/chat", header: "alice-token", outcome: "verified/", wantHeader: true},
		{name: "pass_token keeps the query", path: "/pass/ws?access_token=alice-token", outcome: "verified/", wantQuery: "access_token=alice-token"},
		{name: "pass_token keeps the cookie", path: "/pass/sse", cookie: "ca_token=alice-token", outcome: "verified/", wantCookie: "ca_token=alice-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "http://localhost:9080"+tc.path, nil)
			if !strings.Contains(tc.path, "bot=") {
				req.Header.Set("X-Bot-Id", "shop")
			}
			if tc.header != "" {
				req.Header.Set("X-Access-Token", tc.header)
			}
			if tc.cookie != "" {
				req.Header.Set("Cookie", tc.cookie)
			}
			tester.AssertResponse(req, http.StatusOK, "backend")
			got, _ := be.received(t)
			if o := got.Header.Get("X-Outcome"); o != tc.outcome {
				t.Errorf("outcome %q, want %q", o, tc.outcome)
			}
			if got.URL.RawQuery != tc.wantQuery {
				t.Errorf("backend got query %q, want %q", got.URL.RawQuery, tc.wantQuery)
			}
			if c := got.Header.Get("Cookie"); c != tc.wantCookie {
				t.Errorf("backend got Cookie %q, want %q", c, tc.wantCookie)
			}
			if _, ok := got.Header["X-Access-Token"]; ok != tc.wantHeader {
				t.Errorf("backend got X-Access-Token: %v, want %v", ok, tc.wantHeader)
			}
		})
	}
}

// TestIntegrationReloadShortensTTL: a reload from cache_ttl 5m to cache_ttl 0 stops
// serving the identities cached before it.
func TestIntegrationReloadShortensTTL(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	loads := 0
	config := func(ttl string) string {
		loads++
		return testGlobalOptions(loads, "") + fmt.Sprintf(`
		http://localhost:9080 {
			custom_auth {
				bot shop {
					auth_url %s/ca
					cache_ttl %s
				}
			}
			reverse_proxy %s
		}`, api.URL, ttl, strings.TrimPrefix(be.URL, "http://"))
	}
	tester := caddytest.NewTester(t)
	send := func() {
		t.Helper()
		req := gatewayRequest("/chat", "alice-token", "")
		req.Close = true // a reload closes the connections of the config it replaces
		tester.AssertResponse(req, http.StatusOK, "backend")
		if got, _ := be.received(t); got.Header.Get("X-Contact-Id") != "2" {
			t.Fatalf("not verified: %v", got.Header)
		}
	}
	tester.InitServer(config("5m"), "caddyfile")
	send()
	send()
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("with cache_ttl 5m: %d API calls, want 1", n)
	}
	tester.InitServer(config("0"), "caddyfile")
	send()
	if n := api.calls.Load(); n != 2 {
		t.Errorf("after a reload to cache_ttl 0: %d API calls, want 2 (the cached identity was served)", n)
	}
}

// TestIntegrationAnswersThatDoNotVerify: answers that identify no one, and a contact
// too large for request headers, fall back with `error`; the request still reaches the
// backend, with no contact header at all.
func TestIntegrationAnswersThatDoNotVerify(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	answers := map[string]string{
		"status-string-token": `{"status":"false","data":{"id":"2"}}`,
		"status-zero-token":   `{"status":0,"data":{"id":"2"}}`,
		"status-null-token":   `{"status":null,"data":{"id":"2"}}`,
		"object-id-token":     `{"data":{"id":{}}}`,
		"array-id-token":      `{"data":{"id":[]}}`,
		"blank-id-token":      `{"data":{"id":"   "}}`,
		"bool-id-token":       `{"data":{"id":true}}`,
		"huge-contact-token":  `{"data":{"id":"2","name":"Big","metadata":{"notes":"` + strings.Repeat("n", 900<<10) + `"}}}`,
	}
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		answer, ok := answers[body["access_token"]]
		if ok {
			io.WriteString(w, answer)
		}
		return ok
	})
	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, "")+fmt.Sprintf(`
	http://localhost:9080 {
		custom_auth {
			sign_key %s
			bot shop {
				auth_url %s/ca
			}
		}
		reverse_proxy %s {
			header_up X-Outcome {http.custom_auth.status}/{http.custom_auth.reason}
		}
	}`, testSignKey, api.URL, strings.TrimPrefix(be.URL, "http://")), "caddyfile")
	for token := range answers {
		t.Run(token, func(t *testing.T) {
			tester.AssertResponse(gatewayRequest("/chat?t="+url.QueryEscape(token), token, ""), http.StatusOK, "backend")
			got, _ := be.received(t)
			if o := got.Header.Get("X-Outcome"); o != "fallback/error" {
				t.Errorf("outcome %q, want fallback/error", o)
			}
			for name := range got.Header {
				if strings.HasPrefix(name, "X-Contact-") {
					t.Errorf("backend got %s", name)
				}
			}
		})
	}
}
