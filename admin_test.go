package customauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/custom-auth/custom_auth/contact"
)

// TestHandlersOfFollowsTheCLIOrder: the admin API finds the handlers of a running
// config in the order the CLI finds them in its JSON, so both test with the same
// handler.
func TestHandlersOfFollowsTheCLIOrder(t *testing.T) {
	handler := func(tag string) *Handler { return &Handler{HeaderPrefix: tag} }
	route := func(handlers ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		return caddyhttp.Route{Handlers: handlers}
	}
	named := route(handler("2"))
	app := &caddyhttp.App{Servers: map[string]*caddyhttp.Server{
		"b": {Routes: caddyhttp.RouteList{route(handler("6"))}},
		"a": {
			Errors:      &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{route(handler("1"))}},
			NamedRoutes: map[string]*caddyhttp.Route{"n": &named},
			Routes: caddyhttp.RouteList{route(
				handler("3"),
				&caddyhttp.Subroute{
					Routes: caddyhttp.RouteList{route(new(caddyhttp.StaticResponse), handler("5"))},
					Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{route(handler("4"))}},
				},
			)},
		},
	}}
	config := `{"apps": {"http": {"servers": {
		"b": {"routes": [{"handle": [{"handler": "custom_auth", "header_prefix": "6"}]}]},
		"a": {
			"routes": [{"handle": [
				{"handler": "custom_auth", "header_prefix": "3"},
				{"handler": "subroute",
				 "routes": [{"handle": [{"handler": "static_response"}, {"handler": "custom_auth", "header_prefix": "5"}]}],
				 "errors": {"routes": [{"handle": [{"handler": "custom_auth", "header_prefix": "4"}]}]}}
			]}],
			"named_routes": {"n": {"handle": [{"handler": "custom_auth", "header_prefix": "2"}]}},
			"errors": {"routes": [{"handle": [{"handler": "custom_auth", "header_prefix": "1"}]}]}
		}
	}}}}`

	var running, cli []string
	for _, h := range handlersOf(app) {
		running = append(running, h.HeaderPrefix)
	}
	for _, raw := range customAuthConfigs([]byte(config)) {
		var h Handler
		if err := json.Unmarshal(raw, &h); err != nil {
			t.Fatal(err)
		}
		cli = append(cli, h.HeaderPrefix)
	}
	want := []string{"1", "2", "3", "4", "5", "6"}
	if !slices.Equal(running, want) || !slices.Equal(cli, want) {
		t.Errorf("running config order %v, CLI order %v, want %v", running, cli, want)
	}
}

// TestTestReportLeavesTheCache: a test asks the identity API every time, and neither
// serves nor stores a verdict; requests around it use the cache as usual.
func TestTestReportLeavesTheCache(t *testing.T) {
	api := newIdentityAPI(t)
	bot := "report-" + t.Name()
	h := provision(t, &Handler{Bots: map[string]*Bot{bot: {AuthURL: api.URL}}})
	m := processMetrics
	verified := counter(m.requests, bot, "verified", "")
	hits, misses := counter(m.cacheRequests, "identity", "hit"), counter(m.cacheRequests, "identity", "miss")
	test := func() {
		t.Helper()
		if r := runTestReport(context.Background(), h, visit{botID: bot, token: "alice-token"}); r.Status != "verified" {
			t.Fatalf("report = %+v", r)
		}
	}
	request := func() {
		t.Helper()
		if got := serve(t, h, widgetRequest(bot, "alice-token", "")); got.placeholder("http.custom_auth.status") != "verified" {
			t.Fatal("the request was not verified")
		}
	}

	test()
	test()
	if n := api.calls.Load(); n != 2 {
		t.Errorf("two tests: %d API calls, want 2", n)
	}
	request()
	if n := api.calls.Load(); n != 3 {
		t.Errorf("a request after the tests: %d API calls, want 3 (a test stored a verdict)", n)
	}
	test()
	if n := api.calls.Load(); n != 4 {
		t.Errorf("a test after a request: %d API calls, want 4 (the test was served a verdict)", n)
	}
	request()
	if n := api.calls.Load(); n != 4 {
		t.Errorf("a second request: %d API calls, want 4 (its verdict was not cached)", n)
	}
	if d := counter(m.requests, bot, "verified", "") - verified; d != 2 {
		t.Errorf("requests_total counted %v verified, want the 2 requests", d)
	}
	if dh, dm := counter(m.cacheRequests, "identity", "hit")-hits, counter(m.cacheRequests, "identity", "miss")-misses; dh != 1 || dm != 1 {
		t.Errorf("identity cache counted %v hits and %v misses, want the requests' 1 and 1", dh, dm)
	}
}

func TestTestReportHidesTheToken(t *testing.T) {
	const token = `tok "en", ü`
	r := &testReport{
		Bot:         "shop",
		Steps:       []testStep{{Step: "identity", Detail: fmt.Sprintf("the visitor claimed %q", token)}},
		RequestBody: map[string]string{"access_token": maskToken(token), "user_id": token},
		Status:      "fallback",
		Reason:      "identity_mismatch",
		Headers:     map[string]string{"X-Contact-Name": contact.EncodeValue(token)},
		Error:       "claimed " + token,
	}
	r.hideToken(token)
	var out strings.Builder
	if err := r.writeJSON(&out); err != nil {
		t.Fatal(err)
	}
	// The token verbatim, as JSON or %q quotes it, and percent-encoded.
	for _, form := range []string{token, `tok \"en\", ü`, "tok%20%22en%22%2C%20%C3%BC"} {
		if strings.Contains(out.String(), form) {
			t.Errorf("the report shows the token as %s:\n%s", form, out.String())
		}
	}
	if r.Steps[0].Detail != "the visitor claimed "+`"`+maskToken(token)+`"` || r.Reason != "identity_mismatch" || r.Bot != "shop" {
		t.Errorf("report = %+v", r)
	}
}

// TestAdminBodyDecoder: both admin endpoints read their body the same way: POST only,
// one JSON object, no unknown field, nothing after it, and a size limit.
func TestAdminBodyDecoder(t *testing.T) {
	endpoints := map[string]func(http.ResponseWriter, *http.Request) error{
		"test":  new(AdminAPI).handleTest,
		"purge": new(PurgeAPI).handlePurge,
	}
	for _, tc := range []struct {
		name, method, body string
		code               int
		message            string
	}{
		{"GET", http.MethodGet, "", http.StatusMethodNotAllowed, "method not allowed: GET; use POST"},
		{"DELETE with a body", http.MethodDelete, `{"bot": "b"}`, http.StatusMethodNotAllowed, "use POST"},
		{"empty", http.MethodPost, "", http.StatusBadRequest, "request body is empty"},
		{"malformed", http.MethodPost, `{"bot": "b"`, http.StatusBadRequest, "request body: unexpected EOF"},
		{"not an object", http.MethodPost, `"b"`, http.StatusBadRequest, "request body: json: cannot unmarshal string"},
		{"unknown field", http.MethodPost, `{"bot": "b", "tokn": "t"}`, http.StatusBadRequest, `request body: json: unknown field "tokn"`},
		{"two objects", http.MethodPost, `{"bot": "b"} {"bot": "c"}`, http.StatusBadRequest, "request body: must be one JSON object"},
		{"trailing data", http.MethodPost, `{"bot": "b"} x`, http.StatusBadRequest, "request body: must be one JSON object"},
		{"too large", http.MethodPost, `{"bot": "` + strings.Repeat("b", 64<<10) + `"}`, http.StatusRequestEntityTooLarge, "request body is over 65536 bytes"},
		{"no bot", http.MethodPost, `{"token": "t"}`, http.StatusBadRequest, `"bot" is required`},
	} {
		for name, handle := range endpoints {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				rec := httptest.NewRecorder()
				err := handle(rec, httptest.NewRequest(tc.method, "/custom-auth/"+name, strings.NewReader(tc.body)))
				apiErr, ok := errors.AsType[caddy.APIError](err)
				if !ok || apiErr.HTTPStatus != tc.code || !strings.Contains(apiErr.Err.Error(), tc.message) {
					t.Fatalf("error %v, want %d with %q", err, tc.code, tc.message)
				}
				if allow := rec.Header().Get("Allow"); (tc.code == http.StatusMethodNotAllowed) != (allow == http.MethodPost) {
					t.Errorf("Allow: %q", allow)
				}
			})
		}
	}
}
