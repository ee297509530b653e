package customauth

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

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
