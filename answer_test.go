package customauth

import (
	"bytes"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

func answerHandler(t *testing.T, api *identityAPI, onFail string) *Handler {
	return provision(t, &Handler{
		Answer:  true,
		OnFail:  onFail,
		SignKey: testSignKey,
		Token:   Sources{"{http.request.header.X-Access-Token}", "{http.request.uri.query.access_token}"},
		Bots: map[string]*Bot{
			"shop":  {AuthURL: api.URL + "/ca", Whitelist: []string{"shop.example.com"}},
			"quiet": {Off: true},
		},
	})
}

// subrequest is what nginx's auth_request sends for a widget request: the original
// headers, the original method, and the original URI in X-Original-URI.
func subrequest(bot, token, originalURI string) *http.Request {
	r := widgetRequest(bot, token, "https://shop.example.com")
	r.URL.Path, r.URL.RawQuery, r.RequestURI = "/custom-auth", "", "/custom-auth"
	if originalURI != "" {
		r.Header.Set("X-Original-URI", originalURI)
	}
	spoof(r)
	r.Header.Set("X-Contact-Status", "verified")
	r.Header.Set("X-Contact-Reason", "")
	r.Header.Set("X-Echo", "client")
	return r
}

// TestAnswer: in answer mode the handler never passes the request on; it answers the
// verdict with the headers the backend is to receive, its own only.
func TestAnswer(t *testing.T) {
	api := newIdentityAPI(t)
	for _, tc := range []struct {
		name, onFail string
		req          *http.Request
		code         int
		status       string
		reason       string
	}{
		{"verified", "", subrequest("shop", "alice-token", "/chat"), 200, "verified", ""},
		{"fallback", "", subrequest("shop", "wrong-token", "/chat"), 200, "fallback", "rejected"},
		{"missing token", "", subrequest("shop", "", "/chat"), 200, "fallback", "missing_token"},
		{"unknown bot", "", subrequest("nope", "alice-token", "/chat"), 200, "fallback", "unknown_bot"},
		{"preflight", "", preflightSubrequest(), 200, "fallback", "preflight"},
		{"reject: verified", "reject", subrequest("shop", "alice-token", "/chat"), 200, "verified", ""},
		{"reject: rejected", "reject", subrequest("shop", "wrong-token", "/chat"), 401, "fallback", "rejected"},
		{"reject: missing token", "reject", subrequest("shop", "", "/chat"), 401, "fallback", "missing_token"},
		{"reject: unknown bot answers 200", "reject", subrequest("nope", "alice-token", "/chat"), 200, "fallback", "unknown_bot"},
		{"reject: disabled answers 200", "reject", subrequest("quiet", "alice-token", "/chat"), 200, "fallback", "disabled"},
		{"reject: preflight answers 200", "reject", preflightSubrequest(), 200, "fallback", "preflight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(t, answerHandler(t, api, tc.onFail), tc.req)
			if got.err != nil || got.called {
				t.Fatalf("err %v, passed on %v: an answer never passes the request on", got.err, got.called)
			}
			if got.code != tc.code {
				t.Errorf("code %d, want %d", got.code, tc.code)
			}
			header := got.answer.Header()
			if s := header.Values("X-Contact-Status"); len(s) != 1 || s[0] != tc.status {
				t.Errorf("X-Contact-Status %q, want %q", s, tc.status)
			}
			if r := header.Get("X-Contact-Reason"); r != tc.reason {
				t.Errorf("X-Contact-Reason %q, want %q", r, tc.reason)
			}
			if tc.code == 401 {
				checkProblem(t, header, got.answer.Body.Bytes(), tc.reason)
			} else if cc := header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			checkAnswerHeaders(t, header, tc.status == "verified")
			if s := got.placeholder("http.custom_auth.status"); s != tc.status {
				t.Errorf("placeholder status %q", s)
			}
		})
	}
}

// checkAnswerHeaders: an answer carries the contact of a verified visitor and nothing
// a client sent, never the token.
func checkAnswerHeaders(t *testing.T, header http.Header, verified bool) {
	t.Helper()
	for name, values := range header {
		joined := strings.Join(values, ",")
		if strings.Contains(joined, "-token") || strings.Contains(joined, "Mallory") || strings.Contains(joined, "999") || name == "X-Echo" || name == "X-Access-Token" {
			t.Errorf("the answer carries %s: %q", name, values)
		}
		if contact.HasPrefix(name, "X-Contact-") && len(values) != 1 {
			t.Errorf("%s has %d values", name, len(values))
		}
	}
	c, err := contact.FromHeaders(header, contact.DefaultPrefix)
	if verified && (err != nil || c.ID != "2" || c.Name != "Nguyễn Văn B" || header.Get("X-Contact-Assertion") == "") {
		t.Errorf("verified answer: contact %+v, %v, assertion %q", c, err, header.Get("X-Contact-Assertion"))
	}
	if !verified && (header.Get("X-Contact-Id") != "" || header.Get("X-Contact-Assertion") != "") {
		t.Errorf("a fallback answer carries a contact: %v", header)
	}
}

func preflightSubrequest() *http.Request {
	r := subrequest("", "", "/chat")
	r.Method = http.MethodOptions
	r.Header.Set("Access-Control-Request-Method", "POST")
	return r
}

// TestAnswerReadsTheOriginalQuery: a query-parameter source reads the original URI in
// X-Original-URI, never the subrequest's own query.
func TestAnswerReadsTheOriginalQuery(t *testing.T) {
	api := newIdentityAPI(t)
	h := answerHandler(t, api, "")
	for _, tc := range []struct {
		name, originalURI, ownQuery, want string
	}{
		{"from the original URI", "/ws?room=1&access_token=alice-token", "", "verified/"},
		{"spelled with escapes", "/ws?%61ccess_token=alice-token", "", "verified/"},
		{"not from the subrequest's query", "/ws?room=1", "access_token=alice-token", "fallback/missing_token"},
		{"no original URI", "", "access_token=alice-token", "fallback/missing_token"},
		{"an original URI that does not parse", "ws?access_token=alice-token", "", "fallback/missing_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := subrequest("shop", "", tc.originalURI)
			r.URL.RawQuery = tc.ownQuery
			got := serve(t, h, r)
			if o := got.placeholder("http.custom_auth.status") + "/" + got.placeholder("http.custom_auth.reason"); o != tc.want {
				t.Errorf("outcome %q, want %q", o, tc.want)
			}
			checkAnswerHeaders(t, got.answer.Header(), tc.want == "verified/")
		})
	}
}

// answerOf is the status/reason a handler in answer mode answers for a widget
// request of bot shop, read from the answer's headers.
func answerOf(t *testing.T, h *Handler, token string) string {
	t.Helper()
	got := serve(t, h, widgetRequest("shop", token, ""))
	if got.called {
		t.Fatal("an answer passed the request on")
	}
	return got.answer.Header().Get("X-Contact-Status") + "/" + got.answer.Header().Get("X-Contact-Reason")
}

// TestAnswerKeepsTheMachinery: answers go through the same caches, coalescing, circuit
// breakers and shared cache as the gateway's requests. (Provision reads nothing of
// Answer, so the tests' handler builders are reused and switched to answer mode.)
func TestAnswerKeepsTheMachinery(t *testing.T) {
	t.Run("concurrent answers make one call", func(t *testing.T) {
		api := newIdentityAPI(t)
		h := cachingHandler(t, api, newClock(), &Bot{})
		h.Answer = true
		var wg sync.WaitGroup
		results := make(chan string, 50)
		for range 50 {
			wg.Go(func() { results <- answerOf(t, h, "alice-token") })
		}
		wg.Wait()
		close(results)
		for r := range results {
			if r != "verified/" {
				t.Fatalf("answer %s", r)
			}
		}
		if n := api.calls.Load(); n != 1 {
			t.Errorf("50 concurrent answers made %d API calls, want 1", n)
		}
	})
	t.Run("the breaker skips an API that is down", func(t *testing.T) {
		api := newIdentityAPI(t)
		api.setAnswer(func(w http.ResponseWriter, _ map[string]string) bool {
			w.WriteHeader(http.StatusBadGateway)
			return true
		})
		h := cachingHandler(t, api, newClock(), &Bot{CacheTTL: dur(0)})
		h.Answer = true
		for i := range 20 {
			if o := answerOf(t, h, "alice-token"); o != "fallback/error" {
				t.Fatalf("answer %d: %s", i, o)
			}
		}
		if n := api.calls.Load(); n != defaultBreakerFailures {
			t.Errorf("API called %d times for 20 answers, want %d before the breaker opened", n, defaultBreakerFailures)
		}
	})
	t.Run("the shared cache serves another gateway", func(t *testing.T) {
		r := startRedis(t)
		api := newIdentityAPI(t)
		first := fleetHandler(t, api, r.url(""), &Bot{})
		second := fleetHandler(t, api, r.url("/0"), &Bot{})
		first.Answer, second.Answer = true, true
		for _, h := range []*Handler{first, second} {
			if o := answerOf(t, h, "alice-token"); o != "verified/" {
				t.Fatalf("answer %s", o)
			}
		}
		if n := api.calls.Load(); n != 1 {
			t.Errorf("%d API calls for one visitor on two gateways, want 1", n)
		}
	})
}

// TestCLIWithTheNginxRecipe: `caddy custom-auth test` runs the steps of the recipe's
// answer-mode config (testdata/nginx/Caddyfile) as of any other.
func TestCLIWithTheNginxRecipe(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	t.Setenv("CA_AUTH_URL", api.URL+"/ca")
	t.Setenv("CA_BOTS_URL", bots.URL+"/bots/")
	t.Setenv("CA_SIGN_KEY", testSignKey)
	t.Setenv("CA_ACCESS_LOG", filepath.Join(t.TempDir(), "access.log"))
	for _, tc := range []struct {
		token, origin string
		code          int
		want          string
	}{
		{"alice-token", "https://shop.example.com", 0, "X-Contact-Id: 2"},
		{"alice-token", "https://evil.example.com", 1, "domain_not_allowed"},
	} {
		code, out, errOut := runCLI(t, "--config", "testdata/nginx/Caddyfile", "--adapter", "caddyfile", "--bot", "shop",
			"--token", tc.token, "--origin", tc.origin)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("exit %d, want %d with %q:\n%s\n%s", code, tc.code, tc.want, out, errOut)
		}
	}
}

// TestAnswerHeadersAreTheirOwn: the contact headers share one allocation, each value a
// slice of its own, so a later handler that adds to one header (nginx copies them;
// Caddy's header directive may add) changes no other.
func TestAnswerHeadersAreTheirOwn(t *testing.T) {
	got := serve(t, answerHandler(t, newIdentityAPI(t), ""), subrequest("shop", "alice-token", "/chat"))
	header := got.answer.Header()
	before := header.Clone()
	header.Add("X-Contact-Id", "added")
	header.Add("X-Contact-Identify-By", "added")
	for name, values := range before {
		if name == "X-Contact-Id" || name == "X-Contact-Identify-By" {
			continue
		}
		if after := header.Values(name); !slices.Equal(after, values) {
			t.Errorf("adding to other headers changed %s: %q, was %q", name, after, values)
		}
	}
	if len(before["X-Contact-Name"]) == 0 {
		t.Fatal("the visitor has no name header to check")
	}
}

// TestSealBindsAVerdictToItsKey: a sealed verdict opens under its key only.
func TestSealBindsAVerdictToItsKey(t *testing.T) {
	v := encodeVerdict(parseAnswer(200, []byte(`{"data":`+aliceData+`}`), "id"), time.Unix(1, 0))
	sealed := sealVerdict("key-1", v)
	if got, err := openVerdict("key-1", sealed); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("under its key: %v", err)
	}
	if _, err := openVerdict("key-2", sealed); err == nil {
		t.Error("a verdict sealed under key-1 opened under key-2")
	}
}
