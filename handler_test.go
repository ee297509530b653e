package customauth

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/custom-auth/custom_auth/contact"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func flowHandler(t *testing.T, api *identityAPI) *Handler {
	return provision(t, &Handler{Bots: map[string]*Bot{
		"shop": {
			AuthURL:     api.URL + "/ca",
			AuthHeaders: map[string]string{"Authorization": "Bearer api-key"},
			Forward:     []string{"user_id", "email"},
			Whitelist:   []string{"shop.example.com", "*.example.org"},
			CacheTTL:    dur(0),
			NegativeTTL: dur(0),
		},
		"open":    {AuthURL: api.URL, CacheTTL: dur(0), NegativeTTL: dur(0)},
		"byemail": {AuthURL: api.URL, IdentifyBy: "email", CacheTTL: dur(0)},
		"byphone": {AuthURL: api.URL, IdentifyBy: "phone_number", CacheTTL: dur(0)},
		"quiet":   {Off: true},
		"down":    {AuthURL: "http://127.0.0.1:1/ca", CacheTTL: dur(0)},
		"slow":    {AuthURL: api.URL, Timeout: caddy.Duration(50 * time.Millisecond), CacheTTL: dur(0)},
	}})
}

func TestFlow(t *testing.T) {
	api := newIdentityAPI(t)
	h := flowHandler(t, api)

	preflight := preflightRequest()

	for _, tc := range []struct {
		name   string
		req    *http.Request
		reason string // "" means verified
		id     string // X-Contact-Id expected on verified
	}{
		{"preflight", preflight, "preflight", ""},
		{"no bot id", widgetRequest("", "alice-token", "https://shop.example.com"), "unknown_bot", ""},
		{"unknown bot", widgetRequest("nope", "alice-token", "https://shop.example.com"), "unknown_bot", ""},
		{"disabled bot", widgetRequest("quiet", "alice-token", "https://shop.example.com"), "disabled", ""},
		{"origin not on whitelist", widgetRequest("shop", "alice-token", "https://evil.example.net"), "domain_not_allowed", ""},
		{"suffix trick", widgetRequest("shop", "alice-token", "https://evil-shop.example.com"), "domain_not_allowed", ""},
		{"origin null", widgetRequest("shop", "alice-token", "null"), "domain_not_allowed", ""},
		{"no origin and no referer", widgetRequest("shop", "alice-token", ""), "domain_not_allowed", ""},
		{"null origin wins over referer", widgetRequest("shop", "alice-token", "null", "Referer", "https://shop.example.com/p"), "domain_not_allowed", ""},
		{"referer when no origin", widgetRequest("shop", "alice-token", "", "Referer", "https://shop.example.com/page?q=1"), "", "2"},
		{"wildcard subdomain", widgetRequest("shop", "alice-token", "https://a.b.example.org"), "", "2"},
		{"missing token", widgetRequest("shop", "", "https://shop.example.com"), "missing_token", ""},
		{"401", widgetRequest("shop", "wrong-token", "https://shop.example.com"), "rejected", ""},
		{"403", widgetRequest("shop", "forbidden-token", "https://shop.example.com"), "rejected", ""},
		{"404", widgetRequest("shop", "not-found-token", "https://shop.example.com"), "rejected", ""},
		{"status false", widgetRequest("shop", "status-false-token", "https://shop.example.com"), "rejected", ""},
		{"500", widgetRequest("shop", "boom-token", "https://shop.example.com"), "error", ""},
		{"418", widgetRequest("shop", "teapot-token", "https://shop.example.com"), "error", ""},
		{"invalid JSON", widgetRequest("shop", "garbage-token", "https://shop.example.com"), "error", ""},
		{"no data", widgetRequest("shop", "no-data-token", "https://shop.example.com"), "error", ""},
		{"data not an object", widgetRequest("shop", "array-data-token", "https://shop.example.com"), "error", ""},
		{"no id", widgetRequest("shop", "no-id-token", "https://shop.example.com"), "error", ""},
		{"empty id", widgetRequest("shop", "empty-id-token", "https://shop.example.com"), "error", ""},
		{"answer over 1 MiB", widgetRequest("shop", "huge-token", "https://shop.example.com"), "error", ""},
		{"timeout", widgetRequest("slow", "hang-token", ""), "error", ""},
		{"connection refused", widgetRequest("down", "alice-token", ""), "error", ""},
		{"verified", widgetRequest("shop", "alice-token", "https://shop.example.com"), "", "2"},
		{"no whitelist accepts any origin", widgetRequest("open", "alice-token", "https://anything.example"), "", "2"},
		{"claimed user id matches", widgetRequest("shop", "alice-token", "https://shop.example.com", "X-User-Id", "2"), "", "2"},
		{"claimed user id differs", widgetRequest("shop", "alice-token", "https://shop.example.com", "X-User-Id", "3"), "identity_mismatch", ""},
		{"claimed user id differs, not forwarded", widgetRequest("open", "alice-token", "", "X-User-Id", "3"), "identity_mismatch", ""},
		{"numeric id", widgetRequest("open", "number-token", "", "X-User-Id", "42"), "", "42"},
		{"email compared case-insensitively", widgetRequest("byemail", "alice-token", "", "X-User-Email", "b@EXAMPLE.com"), "", "2"},
		{"email differs", widgetRequest("byemail", "alice-token", "", "X-User-Email", "c@example.com"), "identity_mismatch", ""},
		{"phone differs", widgetRequest("byphone", "alice-token", "", "X-User-Phone", "0999"), "identity_mismatch", ""},
		{"phone matches", widgetRequest("byphone", "alice-token", "", "X-User-Phone", "0912345678"), "", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every request also tries to pass itself off as verified.
			tc.req.Header.Set("X-Contact-Id", "999")
			tc.req.Header["X_Contact_Name"] = []string{"Mallory"}
			tc.req.Header["x.contact.email"] = []string{"mallory@example.com"}
			tc.req.Header["X-CONTACT-IDENTIFY-BY"] = []string{"id"}

			got := serve(t, h, tc.req)
			if got.err != nil || !got.called {
				t.Fatalf("request not passed on: err=%v", got.err)
			}
			wantStatus := "fallback"
			if tc.reason == "" {
				wantStatus = "verified"
			}
			if s := got.placeholder("http.custom_auth.status"); s != wantStatus {
				t.Errorf("status = %q, want %q", s, wantStatus)
			}
			if r := got.placeholder("http.custom_auth.reason"); r != tc.reason {
				t.Errorf("reason = %q, want %q", r, tc.reason)
			}
			for name, values := range got.header {
				if !contact.HasPrefix(name, "X-Contact-") {
					continue
				}
				if tc.reason != "" {
					t.Errorf("fallback passed on contact header %s: %q", name, values)
				}
				if strings.Contains(strings.Join(values, ""), "Mallory") || strings.Contains(strings.Join(values, ""), "mallory") || strings.Contains(strings.Join(values, ""), "999") {
					t.Errorf("spoofed value survived in %s: %q", name, values)
				}
				if len(values) != 1 {
					t.Errorf("%s has %d values", name, len(values))
				}
			}
			if tc.reason == "" {
				if id := got.header.Get("X-Contact-Id"); id != tc.id {
					t.Errorf("X-Contact-Id = %q, want %q", id, tc.id)
				}
			}
		})
	}
}

func TestVerifiedHeadersAndPlaceholders(t *testing.T) {
	api := newIdentityAPI(t)
	h := flowHandler(t, api)
	got := serve(t, h, widgetRequest("shop", "alice-token", "https://shop.example.com", "X-User-Id", "2", "X-User-Email", "b@example.com", "X-User-Phone", "0912"))

	want := map[string]string{
		"X-Contact-Id":           "2",
		"X-Contact-Name":         "Nguy%E1%BB%85n%20V%C4%83n%20B",
		"X-Contact-Email":        "B@Example.com",
		"X-Contact-Phone-Number": "0912345678",
		"X-Contact-Country-Code": "+84",
		"X-Contact-Avatar":       "https://cdn.example.com/b.png",
		"X-Contact-Label":        "VIP",
		"X-Contact-Metadata":     `{"order_id":"ORD-5578XZ","order_quantity":3}`,
		"X-Contact-Identify-By":  "id",
	}
	for name, value := range want {
		if g := got.header.Get(name); g != value {
			t.Errorf("%s = %q, want %q", name, g, value)
		}
	}
	if a := got.header.Get("X-Contact-Assertion"); a != "" {
		t.Errorf("assertion without sign_key: %q", a)
	}

	placeholders := map[string]string{
		"http.custom_auth.status":                          "verified",
		"http.custom_auth.reason":                          "",
		"http.custom_auth.bot_id":                          "shop",
		"http.custom_auth.contact.id":                      "2",
		"http.custom_auth.contact.name":                    "Nguyễn Văn B",
		"http.custom_auth.contact.metadata":                `{"order_id":"ORD-5578XZ","order_quantity":3}`,
		"http.custom_auth.contact.metadata.order_id":       "ORD-5578XZ",
		"http.custom_auth.contact.metadata.order_quantity": "3",
	}
	for key, value := range placeholders {
		if g := got.placeholder(key); g != value {
			t.Errorf("{%s} = %q, want %q", key, g, value)
		}
	}

	// The API got the token, the forwarded fields the visitor supplied and nothing
	// else, with the configured header.
	body := api.lastBody(t)
	wantBody := map[string]string{"access_token": "alice-token", "user_id": "2", "email": "b@example.com"}
	if len(body) != len(wantBody) {
		t.Errorf("API body = %v, want %v", body, wantBody)
	}
	for k, v := range wantBody {
		if body[k] != v {
			t.Errorf("API body[%s] = %q, want %q", k, body[k], v)
		}
	}
	hdr := api.lastHeader(t)
	if hdr.Get("Authorization") != "Bearer api-key" || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("API headers = %v", hdr)
	}
}

func TestFallbackPassesRequestUnmodified(t *testing.T) {
	api := newIdentityAPI(t)
	h := flowHandler(t, api)
	r := widgetRequest("shop", "wrong-token", "https://shop.example.com", "X-Custom", "kept", "X-Contact-Id", "1")
	got := serve(t, h, r)
	if got.method != http.MethodPost || got.uri != "/chat/messages?x=1" || got.body != `{"text":"hi"}` {
		t.Errorf("request changed: %s %s %q", got.method, got.uri, got.body)
	}
	if got.header.Get("X-Custom") != "kept" || got.header.Get("Origin") != "https://shop.example.com" {
		t.Errorf("other headers changed: %v", got.header)
	}
	if _, ok := got.header["X-Access-Token"]; ok {
		t.Error("the access token passed on to the backend")
	}
	if _, ok := got.header["X-Contact-Id"]; ok {
		t.Error("spoofed X-Contact-Id passed on")
	}
}

func TestContactHeaderEncodingCannotSplitHeaders(t *testing.T) {
	api := newIdentityAPI(t)
	h := flowHandler(t, api)
	got := serve(t, h, widgetRequest("open", "crlf-token", ""))
	if id := got.header.Get("X-Contact-Id"); id != "7" {
		t.Fatalf("X-Contact-Id = %q, want 7", id)
	}
	name := got.header.Get("X-Contact-Name")
	if name != "Eve%0D%0AX-Contact-Id%3A%201" {
		t.Errorf("X-Contact-Name = %q", name)
	}
	if got.placeholder("http.custom_auth.contact.name") != "Eve\r\nX-Contact-Id: 1" {
		t.Errorf("placeholder = %q", got.placeholder("http.custom_auth.contact.name"))
	}
}

func TestNumericAndBooleanValuesAsJSONText(t *testing.T) {
	api := newIdentityAPI(t)
	h := flowHandler(t, api)
	got := serve(t, h, widgetRequest("open", "number-token", ""))
	if got.header.Get("X-Contact-Id") != "42" {
		t.Errorf("X-Contact-Id = %q", got.header.Get("X-Contact-Id"))
	}
	if _, ok := got.header["X-Contact-Email"]; ok {
		t.Error("X-Contact-Email set though the API sent no email")
	}
	if got.placeholder("http.custom_auth.contact.vip") != "true" {
		t.Errorf("{contact.vip} = %q", got.placeholder("http.custom_auth.contact.vip"))
	}
}

func TestOnFailReject(t *testing.T) {
	api := newIdentityAPI(t)
	h := provision(t, &Handler{OnFail: "reject", Bots: map[string]*Bot{
		"shop":  {AuthURL: api.URL, Whitelist: []string{"shop.example.com"}},
		"quiet": {Off: true},
	}})
	preflight := preflightRequest()

	for _, tc := range []struct {
		name   string
		req    *http.Request
		code   int
		reason string // of the 401's problem body
	}{
		{"verified", widgetRequest("shop", "alice-token", "https://shop.example.com"), 200, ""},
		{"rejected", widgetRequest("shop", "wrong-token", "https://shop.example.com"), 401, "rejected"},
		{"domain", widgetRequest("shop", "alice-token", "https://evil.example.com"), 401, "domain_not_allowed"},
		{"missing token", widgetRequest("shop", "", "https://shop.example.com"), 401, "missing_token"},
		{"unknown bot passes", widgetRequest("other", "alice-token", ""), 200, ""},
		{"disabled passes", widgetRequest("quiet", "alice-token", ""), 200, ""},
		{"preflight passes", preflight, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(t, h, tc.req)
			if got.code != tc.code {
				t.Errorf("code = %d, want %d (err %v)", got.code, tc.code, got.err)
			}
			if (tc.code == 200) != got.called {
				t.Errorf("next called = %v", got.called)
			}
			if tc.code == 401 {
				checkProblem(t, got.answer.Header(), got.answer.Body.Bytes(), tc.reason)
			}
		})
	}
}

func TestDefaultBot(t *testing.T) {
	api := newIdentityAPI(t)
	h := provision(t, &Handler{Bots: map[string]*Bot{
		"*":     {AuthURL: api.URL},
		"quiet": {Off: true},
	}})
	if got := serve(t, h, widgetRequest("any-bot", "alice-token", "")); got.placeholder("http.custom_auth.status") != "verified" {
		t.Errorf("bot * did not apply: %q", got.placeholder("http.custom_auth.reason"))
	}
	if got := serve(t, h, widgetRequest("quiet", "alice-token", "")); got.placeholder("http.custom_auth.reason") != "disabled" {
		t.Errorf("listed bot lost to bot *: %q", got.placeholder("http.custom_auth.reason"))
	}
}

func TestCustomSourcesAndPrefix(t *testing.T) {
	api := newIdentityAPI(t)
	h := provision(t, &Handler{
		BotID:        Sources{"{http.request.uri.query.bot}"},
		Token:        Sources{"{http.request.header.Authorization}"},
		Origin:       Sources{"{http.request.header.X-Page-Origin}"},
		HeaderPrefix: "X-Visitor-",
		Fields:       map[string]Sources{"user_id": {"{http.request.uri.query.uid}"}, "locale": {"{http.request.header.Accept-Language}"}},
		Bots:         map[string]*Bot{"b1": {AuthURL: api.URL, Forward: []string{"user_id", "locale"}, Whitelist: []string{"shop.example.com"}}},
	})
	r := widgetRequest("", "", "https://evil.example.com", "Authorization", "alice-token", "X-Page-Origin", "https://shop.example.com", "Accept-Language", "vi", "X_Visitor_Id", "1")
	r.URL.RawQuery = "bot=b1&uid=2"
	got := serve(t, h, r)
	if got.placeholder("http.custom_auth.status") != "verified" {
		t.Fatalf("reason = %q", got.placeholder("http.custom_auth.reason"))
	}
	if got.header.Get("X-Visitor-Id") != "2" || got.header.Get("X-Visitor-Identify-By") != "id" {
		t.Errorf("headers = %v", got.header)
	}
	body := api.lastBody(t)
	if body["user_id"] != "2" || body["locale"] != "vi" || body["access_token"] != "alice-token" {
		t.Errorf("API body = %v", body)
	}
}

// BenchmarkServeHTTPWarm is the cost of a verified visitor whose identity is cached:
// everything the handler does for a request, without the next handler. The harness
// sub-benchmark is the loop's own cost (a fresh header map and replacer per request,
// as Caddy gives), to subtract from the others.
func BenchmarkServeHTTPWarm(b *testing.B) {
	for _, mode := range []string{"harness", "headers", "headers+assertion"} {
		b.Run(mode, func(b *testing.B) {
			signed := mode == "headers+assertion"
			api := newIdentityAPI(b)
			h := &Handler{Bots: map[string]*Bot{"shop": {
				AuthURL: api.URL, Forward: []string{"user_id"}, Whitelist: []string{"shop.example.com", "*.example.org"},
			}}}
			if signed {
				h.SignKey = strings.Repeat("k", 32)
			}
			provision(b, h)
			h.env.logger = zap.NewNop()
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			// The headers a browser sends with a widget request.
			base := widgetRequest("shop", "alice-token", "https://shop.example.com", "X-User-Id", "2",
				"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
				"Accept", "*/*", "Content-Type", "application/json", "Content-Length", "13",
				"Accept-Encoding", "gzip, deflate, br, zstd", "Accept-Language", "vi-VN,vi;q=0.9,en;q=0.8",
				"Referer", "https://shop.example.com/cart", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "cross-site",
				"Sec-Fetch-Dest", "empty", "Connection", "keep-alive")
			repl := caddyhttp.NewTestReplacer(base)
			w := httptest.NewRecorder()
			header := base.Header.Clone()
			r := base.Clone(base.Context())
			if err := h.ServeHTTP(w, r, next); err != nil || r.Header.Get("X-Contact-Id") != "2" {
				b.Fatalf("not verified: %v", err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				// A fresh header map and replacer per request, as Caddy gives.
				r.Header = maps.Clone(header)
				*repl = *caddy.NewReplacer()
				if mode == "harness" {
					continue // what the loop costs without the handler, to subtract
				}
				if err := h.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMismatchLogsNoContactValue: an identity_mismatch's error quotes the API's primary
// key and the visitor's claim, which the test report shows; the debug log has neither.
func TestMismatchLogsNoContactValue(t *testing.T) {
	api := newIdentityAPI(t)
	core, logs := observer.New(zapcore.DebugLevel)
	h := provision(t, &Handler{logger: zap.New(core), Bots: map[string]*Bot{"shop": {AuthURL: api.URL}}})
	got := serve(t, h, widgetRequest("shop", "alice-token", "", "X-User-Id", "claimed-9"))
	if r := got.placeholder("http.custom_auth.reason"); r != "identity_mismatch" {
		t.Fatalf("reason = %q, want identity_mismatch", r)
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if text := fmt.Sprint(f.String, f.Interface); strings.Contains(text, "claimed-9") || strings.Contains(text, `"2"`) {
				t.Errorf("%q logs %s = %s", e.Message, f.Key, text)
			}
		}
	}
}
