package customauth

// Integration tests of the admin API's test endpoint and of the outcome in Caddy's
// access log, through a real Caddy (see caddy_test.go for the ports).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

const adminTestURL = "http://localhost:2999/custom-auth/test"

// startAdminCaddy runs a Caddy whose second custom_auth handler, inside a `handle`
// block, knows bot shop; a test must find it there.
func startAdminCaddy(t *testing.T, api *identityAPI, loads int) *caddytest.Tester {
	tester := caddytest.NewTester(t)
	tester.InitServer(adminCaddyfile(api, loads), "caddyfile")
	return tester
}

func adminCaddyfile(api *identityAPI, loads int) string {
	return testGlobalOptions(loads, "") + fmt.Sprintf(`
	http://localhost:9080 {
		handle /other/* {
			custom_auth {
				bot elsewhere {
					off
				}
			}
			respond other
		}
		handle {
			custom_auth {
				sign_key %s
				bot shop {
					auth_url %s/ca
					forward user_id
					whitelist shop.example.com
				}
			}
			respond ok
		}
	}`, testSignKey, api.URL)
}

// postTest asks the admin API for a test and returns the status code and the body.
func postTest(t *testing.T, tester *caddytest.Tester, body string) (int, string) {
	t.Helper()
	return adminRequest(t, tester, http.MethodPost, adminTestURL, body)
}

func adminRequest(t *testing.T, tester *caddytest.Tester, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := tester.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(answer)
}

// adminReport is the report as a dashboard reads it.
type adminReport struct {
	Bot   string `json:"bot"`
	Steps []struct {
		Step       string  `json:"step"`
		Passed     bool    `json:"passed"`
		Detail     string  `json:"detail"`
		DurationMS float64 `json:"duration_ms"`
	} `json:"steps"`
	RequestBody map[string]string `json:"request_body"`
	APIStatus   int               `json:"api_status"`
	Status      string            `json:"status"`
	Reason      string            `json:"reason"`
	Headers     map[string]string `json:"headers"`
	Error       string            `json:"error"`
}

func decodeReport(t *testing.T, body string) adminReport {
	t.Helper()
	var r adminReport
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("the report is not JSON: %v\n%s", err, body)
	}
	return r
}

func TestIntegrationAdminTestVerified(t *testing.T) {
	api := newIdentityAPI(t)
	tester := startAdminCaddy(t, api, 1)
	const token = "alice-token"

	code, body := postTest(t, tester, `{"bot": "shop", "token": "alice-token", "origin": "https://shop.example.com", "fields": {"user_id": "2"}}`)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	if strings.Contains(body, token) {
		t.Errorf("the token is in the report:\n%s", body)
	}
	r := decodeReport(t, body)
	if r.Status != "verified" || r.Reason != "" || r.Bot != "shop" || r.APIStatus != 200 || r.Error != "" {
		t.Errorf("report = %+v", r)
	}
	var names []string
	for _, s := range r.Steps {
		names = append(names, s.Step)
		if !s.Passed {
			t.Errorf("step %s did not pass: %s", s.Step, s.Detail)
		}
	}
	if strings.Join(names, ",") != "bot,whitelist,identity" || r.Steps[2].DurationMS <= 0 {
		t.Errorf("steps = %+v", r.Steps)
	}
	if r.RequestBody["user_id"] != "2" || r.RequestBody["access_token"] != maskToken(token) {
		t.Errorf("request body = %v", r.RequestBody)
	}
	if r.Headers["X-Contact-Id"] != "2" || r.Headers["X-Contact-Name"] != "Nguy%E1%BB%85n%20V%C4%83n%20B" ||
		!strings.HasPrefix(r.Headers["X-Contact-Assertion"], "ey") {
		t.Errorf("headers = %v", r.Headers)
	}
	// The real API was asked, with the real token.
	if b := api.lastBody(t); b["access_token"] != token || b["user_id"] != "2" {
		t.Errorf("the identity API got %v", b)
	}

	// The first handler of the config knows bot elsewhere.
	code, body = postTest(t, tester, `{"bot": "elsewhere", "token": "alice-token"}`)
	if r := decodeReport(t, body); code != http.StatusOK || r.Status != "fallback" || r.Reason != "disabled" {
		t.Errorf("bot elsewhere: %d %s", code, body)
	}
}

// TestIntegrationAdminTestFollowsReloads: the test runs against the config running
// now, not the one that was running when the admin endpoint started.
func TestIntegrationAdminTestFollowsReloads(t *testing.T) {
	first, second := newIdentityAPI(t), newIdentityAPI(t)
	tester := startAdminCaddy(t, first, 1)
	tester.InitServer(adminCaddyfile(second, 2), "caddyfile")

	code, body := postTest(t, tester, `{"bot": "shop", "token": "alice-token", "origin": "https://shop.example.com"}`)
	if r := decodeReport(t, body); code != http.StatusOK || r.Status != "verified" {
		t.Fatalf("%d %s", code, body)
	}
	if first.calls.Load() != 0 || second.calls.Load() != 1 {
		t.Errorf("identity API calls: %d to the unloaded config's, %d to the running one's", first.calls.Load(), second.calls.Load())
	}
}

func TestIntegrationAdminTestRejected(t *testing.T) {
	api := newIdentityAPI(t)
	tester := startAdminCaddy(t, api, 1)

	code, body := postTest(t, tester, `{"bot": "shop", "token": "wrong-token", "origin": "https://shop.example.com"}`)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	if strings.Contains(body, "wrong-token") {
		t.Errorf("the token is in the report:\n%s", body)
	}
	r := decodeReport(t, body)
	if r.Status != "fallback" || r.Reason != "rejected" || r.APIStatus != http.StatusUnauthorized || r.Headers != nil {
		t.Errorf("report = %+v", r)
	}
	if len(r.Steps) != 3 || !r.Steps[1].Passed || r.Steps[2].Passed || r.Steps[2].Detail != "rejected (HTTP 401)" {
		t.Errorf("steps = %+v", r.Steps)
	}

	// A step before the API decides too: the origin.
	code, body = postTest(t, tester, `{"bot": "shop", "token": "wrong-token", "origin": "https://evil.example.com"}`)
	if r := decodeReport(t, body); code != http.StatusOK || r.Reason != "domain_not_allowed" || len(r.Steps) != 2 || r.RequestBody != nil {
		t.Errorf("%d %s", code, body)
	}
}

// TestIntegrationAdminTestBadInput: each kind of bad input is refused with Caddy's
// admin error JSON, and no answer carries the token.
func TestIntegrationAdminTestBadInput(t *testing.T) {
	api := newIdentityAPI(t)
	tester := startAdminCaddy(t, api, 1)
	const token = "secret-token-7f3a"

	for _, tc := range []struct {
		name, method, body string
		code               int
		message            string
	}{
		{"GET", http.MethodGet, "", http.StatusMethodNotAllowed, "method not allowed: GET; use POST"},
		{"PUT", http.MethodPut, `{"bot": "shop", "token": "` + token + `"}`, http.StatusMethodNotAllowed, "use POST"},
		{"no bot", http.MethodPost, `{"token": "` + token + `"}`, http.StatusBadRequest, `\"bot\" is required`},
		{"empty body", http.MethodPost, ``, http.StatusBadRequest, "request body is empty"},
		{"malformed JSON", http.MethodPost, `{"bot": "shop", "token": "` + token + `"`, http.StatusBadRequest, "request body: unexpected EOF"},
		{"not an object", http.MethodPost, `["shop"]`, http.StatusBadRequest, "request body: json: cannot unmarshal array"},
		{"wrong type", http.MethodPost, `{"bot": "shop", "token": "` + token + `", "fields": {"user_id": 2}}`, http.StatusBadRequest, "request body: json: cannot unmarshal number"},
		{"unknown field", http.MethodPost, `{"bot": "shop", "tokn": "` + token + `"}`, http.StatusBadRequest, `request body: json: unknown field \"tokn\"`},
		{"two objects", http.MethodPost, `{"bot": "shop"} {"bot": "shop"}`, http.StatusBadRequest, "must be one JSON object"},
		{"unknown bot", http.MethodPost, `{"bot": "nobody", "token": "` + token + `"}`, http.StatusBadRequest, `no custom_auth handler of the running config knows bot \"nobody\"`},
		{"undefined field", http.MethodPost, `{"bot": "shop", "token": "` + token + `", "fields": {"shoe_size": "9"}}`, http.StatusBadRequest, "fields: shoe_size: the config defines no such field"},
		{"too large", http.MethodPost, `{"bot": "shop", "token": "` + strings.Repeat("x", maxTestRequestSize) + `"}`, http.StatusRequestEntityTooLarge, "request body is over 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := adminRequest(t, tester, tc.method, adminTestURL, tc.body)
			var apiErr struct {
				Error string `json:"error"`
			}
			if code != tc.code || json.Unmarshal([]byte(body), &apiErr) != nil || !strings.Contains(body, tc.message) {
				t.Errorf("%d %s, want %d with %q", code, body, tc.code, tc.message)
			}
			if strings.Contains(body, token) {
				t.Errorf("the token is in the answer: %s", body)
			}
		})
	}
	if n := api.calls.Load(); n != 0 {
		t.Errorf("bad input made %d identity API calls", n)
	}
}

// TestIntegrationAdminTestHidesTheToken: the token is hidden also where the report
// quotes a value that happens to be it: a claimed field in an error and in the request
// body, and a contact field the API echoes, which a header percent-encodes.
func TestIntegrationAdminTestHidesTheToken(t *testing.T) {
	api := newIdentityAPI(t)
	const echoed = "echo token, ü"
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		if body["access_token"] != echoed {
			return false
		}
		answer, _ := json.Marshal(map[string]any{"data": map[string]string{"id": "9", "name": echoed}})
		w.Write(answer)
		return true
	})
	tester := startAdminCaddy(t, api, 1)

	code, body := postTest(t, tester, `{"bot": "shop", "token": "alice-token", "origin": "https://shop.example.com", "fields": {"user_id": "alice-token"}}`)
	r := decodeReport(t, body)
	if code != http.StatusOK || r.Reason != "identity_mismatch" || !strings.Contains(r.Error, "the visitor claimed") {
		t.Errorf("%d %s", code, body)
	}
	if strings.Contains(body, "alice-token") {
		t.Errorf("the token is in the report:\n%s", body)
	}

	requestBody, _ := json.Marshal(map[string]string{"bot": "shop", "token": echoed, "origin": "https://shop.example.com"})
	code, body = postTest(t, tester, string(requestBody))
	r = decodeReport(t, body)
	if code != http.StatusOK || r.Status != "verified" || r.Headers["X-Contact-Id"] != "9" {
		t.Errorf("%d %s", code, body)
	}
	for _, form := range []string{echoed, "echo token, \\u00fc", "echo%20token%2C%20%C3%BC"} {
		if strings.Contains(body, form) {
			t.Errorf("the token is in the report as %q:\n%s", form, body)
		}
	}
}

// TestIntegrationAdminTestLeavesCacheAndMetrics: a test neither stores nor reads a
// verdict, and counts in no request or identity-cache metric; real requests around it
// do both.
func TestIntegrationAdminTestLeavesCacheAndMetrics(t *testing.T) {
	api := newIdentityAPI(t)
	tester := startAdminCaddy(t, api, 1)
	series := []string{
		`caddy_custom_auth_requests_total{bot="shop",reason="",status="verified"}`,
		`caddy_custom_auth_cache_requests_total{cache="identity",result="hit"}`,
		`caddy_custom_auth_cache_requests_total{cache="identity",result="miss"}`,
	}
	metrics := func() map[string]float64 {
		t.Helper()
		code, text := adminRequest(t, tester, http.MethodGet, "http://localhost:2999/metrics", "")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		values := map[string]float64{}
		for _, s := range series {
			values[s] = metricValue(text, s)
		}
		return values
	}
	test := func() {
		t.Helper()
		code, body := postTest(t, tester, `{"bot": "shop", "token": "alice-token", "origin": "https://shop.example.com"}`)
		if r := decodeReport(t, body); code != http.StatusOK || r.Status != "verified" {
			t.Fatalf("test: %d %s", code, body)
		}
	}
	request := func() {
		t.Helper()
		tester.AssertResponse(gatewayRequest("/chat", "alice-token", "https://shop.example.com"), http.StatusOK, "ok")
	}
	wantCalls := func(when string, want int64) {
		t.Helper()
		if n := api.calls.Load(); n != want {
			t.Errorf("%s: %d identity API calls, want %d", when, n, want)
		}
	}
	moved := func(before, after map[string]float64) map[string]float64 {
		diff := map[string]float64{}
		for _, s := range series {
			if d := after[s] - before[s]; d != 0 {
				diff[s] = d
			}
		}
		return diff
	}

	m0 := metrics()
	test()
	wantCalls("a test", 1)
	m1 := metrics()
	if d := moved(m0, m1); len(d) != 0 {
		t.Errorf("a test moved metrics: %v", d)
	}
	request()
	wantCalls("a test, then a request", 2) // the test stored no verdict
	m2 := metrics()
	if d := moved(m1, m2); d[series[0]] != 1 || d[series[2]] != 1 || len(d) != 2 {
		t.Errorf("a request moved metrics by %v, want one verified request and one miss", d)
	}
	test()
	wantCalls("a second test", 3) // a test reads no verdict
	if d := moved(m2, metrics()); len(d) != 0 {
		t.Errorf("a second test moved metrics: %v", d)
	}
	request()
	wantCalls("a second request", 3) // the first request's verdict serves
}

// metricValue reads one series from Prometheus' text format; 0 when it is absent.
func metricValue(text, series string) float64 {
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestIntegrationAccessLogOutcome: with `log_append`, the outcome is in Caddy's access
// log line, for a verified request, a fallback that passes on, and one rejected with
// 401 by on_fail reject; the README's filter keeps the token out.
func TestIntegrationAccessLogOutcome(t *testing.T) {
	api := newIdentityAPI(t)
	logFile := filepath.Join(t.TempDir(), "access.log")
	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, "")+fmt.Sprintf(`
	http://localhost:9080 {
		log {
			output file %s
			format filter {
				request>headers>X-Access-Token delete
			}
		}
		log_append custom_auth_status {http.custom_auth.status}
		log_append custom_auth_reason {http.custom_auth.reason}
		log_append custom_auth_bot {http.custom_auth.bot_id}
		handle /strict/* {
			custom_auth {
				on_fail reject
				bot shop {
					auth_url %[2]s/ca
				}
			}
			respond ok
		}
		handle {
			custom_auth {
				bot shop {
					auth_url %[2]s/ca
				}
			}
			respond ok
		}
	}`, logFile, api.URL), "caddyfile")

	tester.AssertResponse(gatewayRequest("/verified", "alice-token", ""), http.StatusOK, "ok")
	tester.AssertResponse(gatewayRequest("/fallback", "wrong-token", ""), http.StatusOK, "ok")
	resp := tester.AssertResponseCode(gatewayRequest("/strict/rejected", "wrong-token", ""), http.StatusUnauthorized)
	resp.Body.Close()

	// Caddy writes the access log line before it finishes the response, so the lines
	// are in the file once the answers have arrived.
	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	type outcomeFields struct{ Status, Reason, Bot string }
	got := map[string]outcomeFields{}
	for line := range strings.Lines(string(raw)) {
		var entry struct {
			Request struct {
				URI string `json:"uri"`
			} `json:"request"`
			Status string `json:"custom_auth_status"`
			Reason string `json:"custom_auth_reason"`
			Bot    string `json:"custom_auth_bot"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("access log line is not JSON: %v\n%s", err, line)
		}
		got[entry.Request.URI] = outcomeFields{entry.Status, entry.Reason, entry.Bot}
	}
	for uri, want := range map[string]outcomeFields{
		"/verified":        {"verified", "", "shop"},
		"/fallback":        {"fallback", "rejected", "shop"},
		"/strict/rejected": {"fallback", "rejected", "shop"},
	} {
		if got[uri] != want {
			t.Errorf("%s logged %+v, want %+v\n%s", uri, got[uri], want, raw)
		}
	}
	if strings.Contains(string(raw), "alice-token") || strings.Contains(string(raw), "wrong-token") {
		t.Errorf("the token is in the access log:\n%s", raw)
	}
}

// TestBinaryListsAdminModule: Caddy built with the module mounts the test endpoint.
func TestBinaryListsAdminModule(t *testing.T) {
	code, out := runCaddy(t, "list-modules")
	if code != 0 || !strings.Contains(out, "admin.api.custom_auth") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
