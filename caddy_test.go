package customauth

// Integration tests through a real Caddy, with real HTTP servers as the customer's
// identity API and the chat backend. caddytest binds fixed ports (admin 2999, HTTP
// 9080), so every such test lives in this package and none runs in parallel.

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/custom-auth/custom_auth/contact"
)

func TestIntegrationFlow(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	tester := startCaddy(t, api, be)

	for _, tc := range []struct {
		name   string
		method string
		bot    string
		token  string
		origin string
		extra  []string
		reason string // "" for verified
	}{
		{name: "verified", bot: "shop", token: "alice-token", origin: "https://shop.example.com"},
		{name: "verified, wildcard origin, user id claimed", bot: "shop", token: "alice-token", origin: "https://a.shop.example.org", extra: []string{"X-User-Id", "2"}},
		{name: "preflight", method: http.MethodOptions, extra: []string{"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "x-bot-id,x-access-token"}, reason: "preflight"},
		{name: "unknown bot", bot: "other", token: "alice-token", origin: "https://shop.example.com", reason: "unknown_bot"},
		{name: "disabled", bot: "quiet", token: "alice-token", origin: "https://shop.example.com", reason: "disabled"},
		{name: "domain not allowed", bot: "shop", token: "alice-token", origin: "https://shop.example.com.evil.net", reason: "domain_not_allowed"},
		{name: "missing token", bot: "shop", origin: "https://shop.example.com", reason: "missing_token"},
		{name: "rejected", bot: "shop", token: "wrong-token", origin: "https://shop.example.com", reason: "rejected"},
		{name: "error", bot: "shop", token: "boom-token", origin: "https://shop.example.com", reason: "error"},
		{name: "identity mismatch", bot: "shop", token: "alice-token", origin: "https://shop.example.com", extra: []string{"X-User-Id", "1"}, reason: "identity_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, "http://localhost:9080/chat/send?room=1", strings.NewReader("hello"))
			for name, value := range map[string]string{"X-Bot-Id": tc.bot, "X-Access-Token": tc.token, "Origin": tc.origin} {
				if value != "" {
					req.Header.Set(name, value)
				}
			}
			for i := 0; i+1 < len(tc.extra); i += 2 {
				req.Header.Set(tc.extra[i], tc.extra[i+1])
			}
			spoof(req)
			tester.AssertResponse(req, http.StatusOK, "backend")
			got, body := be.received(t)

			wantStatus := "verified"
			if tc.reason != "" {
				wantStatus = "fallback"
			}
			if s, r := got.Header.Get("X-Custom-Auth-Status"), got.Header.Get("X-Custom-Auth-Reason"); s != wantStatus || r != tc.reason {
				t.Errorf("outcome = %s/%s, want %s/%s", s, r, wantStatus, tc.reason)
			}
			if got.Method != method || got.URL.RequestURI() != "/chat/send?room=1" || body != "hello" {
				t.Errorf("request changed: %s %s %q", got.Method, got.URL.RequestURI(), body)
			}
			for name, values := range got.Header {
				if !contact.HasPrefix(name, "X-Contact-") {
					continue
				}
				if tc.reason != "" {
					t.Errorf("fallback: backend got %s: %q", name, values)
				}
				for _, spoofed := range spoofedHeaders {
					if len(values) != 1 || values[0] == spoofed {
						t.Errorf("spoofed %s reached the backend: %q", name, values)
					}
				}
			}
			if tc.reason != "" {
				return
			}
			c, err := contact.FromHeaders(got.Header, contact.DefaultPrefix)
			if err != nil {
				t.Fatalf("decoding contact headers: %v", err)
			}
			if c.ID != "2" || c.Name != "Nguyễn Văn B" || c.Email != "B@Example.com" || c.Metadata["order_id"] != "ORD-5578XZ" {
				t.Errorf("contact = %+v", c)
			}
			verifier, err := contact.NewHMACVerifier([]byte(testSignKey))
			if err != nil {
				t.Fatal(err)
			}
			claims, err := verifier.Verify(got.Header.Get("X-Contact-Assertion"), "shop")
			if err != nil {
				t.Fatalf("assertion: %v", err)
			}
			if claims.Subject != "2" || claims.IdentifyBy != "id" || !strings.Contains(string(claims.Data), `"Nguyễn Văn B"`) {
				t.Errorf("claims = %+v", claims)
			}
		})
	}
}

func TestIntegrationIdentityAPIRequest(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	tester := startCaddy(t, api, be)

	req := gatewayRequest("/chat", "alice-token", "https://shop.example.com")
	req.Header.Set("X-User-Email", "b@example.com")
	req.Header.Set("X-User-Phone", "0912345678") // supplied, but not forwarded
	tester.AssertResponse(req, http.StatusOK, "backend")

	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.bodies) != 1 {
		t.Fatalf("API called %d times", len(api.bodies))
	}
	want := map[string]string{"access_token": "alice-token", "email": "b@example.com"}
	if fmt.Sprint(api.bodies[0]) != fmt.Sprint(want) {
		t.Errorf("API body = %v, want %v", api.bodies[0], want)
	}
	if h := api.headers[0]; h.Get("Authorization") != "Bearer api-key" || h.Get("Content-Type") != "application/json" {
		t.Errorf("API headers = %v", h)
	}
}

func TestIntegrationHostileContactValues(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	tester := startCaddy(t, api, be)

	req := gatewayRequest("/chat", "crlf-token", "https://shop.example.com")
	tester.AssertResponse(req, http.StatusOK, "backend")
	got, _ := be.received(t)
	if ids := got.Header.Values("X-Contact-Id"); len(ids) != 1 || ids[0] != "7" {
		t.Errorf("X-Contact-Id = %q: a value split a header", ids)
	}
	c, err := contact.FromHeaders(got.Header, contact.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Eve\r\nX-Contact-Id: 1" {
		t.Errorf("name = %q", c.Name)
	}
}

func TestIntegrationOnFailReject(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	tester := startCaddy(t, api, be)

	for _, tc := range []struct {
		token, origin string
		code          int
		reason        string // of the 401's problem body
	}{
		{"alice-token", "https://shop.example.com", http.StatusOK, ""},
		{"wrong-token", "https://shop.example.com", http.StatusUnauthorized, "rejected"},
		{"alice-token", "https://evil.example.com", http.StatusUnauthorized, "domain_not_allowed"},
	} {
		be.mu.Lock()
		before := be.calls
		be.mu.Unlock()
		req := gatewayRequest("/strict/chat", tc.token, tc.origin)
		spoof(req)
		resp := tester.AssertResponseCode(req, tc.code)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.code == http.StatusUnauthorized {
			checkProblem(t, resp.Header, body, tc.reason)
		}
		be.mu.Lock()
		reached := be.calls > before
		be.mu.Unlock()
		if reached != (tc.code == http.StatusOK) {
			t.Errorf("%s from %s: backend reached = %v", tc.token, tc.origin, reached)
		}
	}
}

func TestBinaryListsModule(t *testing.T) {
	code, out := runCaddy(t, "list-modules")
	if code != 0 || !strings.Contains(out, "http.handlers.custom_auth") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestBinaryValidateNamesFileAndLine(t *testing.T) {
	// Caddy logs the error as JSON, so quotes in it appear escaped.
	for _, tc := range []struct {
		name, config, want, line string
	}{
		{"bad identify_by", ":0 {\n\tcustom_auth {\n\t\tbot b {\n\t\t\tauth_url https://a.example\n\t\t\tidentify_by nick\n\t\t}\n\t}\n}\n",
			`'custom_auth': identify_by: must be id, email or phone_number, not \"nick\"`, "Caddyfile:5"},
		{"unknown subdirective", ":0 {\n\tcustom_auth {\n\t\tbogus 1\n\t}\n}\n", `'custom_auth': unrecognized subdirective 'bogus'`, "Caddyfile:3"},
		{"missing auth_url", ":0 {\n\tcustom_auth {\n\t\tbot b {\n\t\t\tforward email\n\t\t}\n\t}\n}\n", `'custom_auth': bot \"b\": auth_url is required`, "Caddyfile:5"},
		{"header_prefix that strips the token", ":0 {\n\tcustom_auth {\n\t\theader_prefix X-Access-\n\t}\n}\n",
			`header_prefix: \"X-Access-\" would strip X-Access-Token, which the module reads`, "Caddyfile:3"},
		{"header_prefix too short", ":0 {\n\tcustom_auth {\n\t\theader_prefix X-\n\t}\n}\n", `header_prefix: \"X-\" is shorter than 5 characters`, "Caddyfile:3"},
		{"auth_url twice", ":0 {\n\tcustom_auth {\n\t\tbot b {\n\t\t\tauth_url https://a.example/1\n\t\t\tauth_url https://a.example/2\n\t\t}\n\t}\n}\n",
			`auth_url: given twice`, "Caddyfile:5"},
		{"empty bot id", ":0 {\n\tcustom_auth {\n\t\tbot \"\" {\n\t\t\toff\n\t\t}\n\t}\n}\n", `bot: the id must not be empty`, "Caddyfile:3"},
		{"field access_token", ":0 {\n\tcustom_auth {\n\t\tfield access_token {http.request.header.X-T}\n\t}\n}\n", `field: access_token is the token's name`, "Caddyfile:3"},
		{"misspelt subdirective", ":0 {\n\tcustom_auth {\n\t\tbot b {\n\t\t\twhitelst a.example\n\t\t}\n\t}\n}\n",
			`unrecognized bot subdirective 'whitelst'; did you mean 'whitelist'?`, "Caddyfile:4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeCaddyfile(t, tc.config)
			code, out := runCaddy(t, "validate", "--config", file, "--adapter", "caddyfile")
			if code == 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, tc.line) {
				t.Errorf("exit %d; output lacks %q at %s:\n%s", code, tc.want, tc.line, out)
			}
		})
	}
	// A JSON config is checked when it is provisioned; the error names the bot.
	file := filepath.Join(t.TempDir(), "caddy.json")
	os.WriteFile(file, []byte(`{"apps":{"http":{"servers":{"s":{"listen":[":0"],"routes":[{"handle":[
		{"handler":"custom_auth","bots":{"shop":{"auth_url":"ftp://x"}}}]}]}}}}}`), 0o600)
	code, out := runCaddy(t, "validate", "--config", file)
	if code == 0 || !strings.Contains(out, `bot \"shop\": auth_url: \"ftp://x\" must be an absolute http or https URL`) {
		t.Errorf("JSON: exit %d:\n%s", code, out)
	}
}

// TestBinaryValidateRefusesEmptySecrets: a value that is written but expands to
// nothing (an unset environment variable) fails `caddy validate`, naming the option;
// a warning before the error names the file and line it is written at.
func TestBinaryValidateRefusesEmptySecrets(t *testing.T) {
	for _, tc := range []struct {
		name, inside, want, warning string
		line                        int
	}{
		{"sign_key", "sign_key {env.CA_TEST_UNSET_KEY}\n\t\tbot b {\n\t\t\tauth_url https://a.example\n\t\t}",
			`sign_key: \"{env.CA_TEST_UNSET_KEY}\" expands to an empty value`, `sign_key: \"{env.CA_TEST_UNSET_KEY}\" expands to an empty value`, 3},
		{"auth_header", "bot b {\n\t\t\tauth_url https://a.example\n\t\t\tauth_header Authorization {env.CA_TEST_UNSET_KEY}\n\t\t}",
			`bot \"b\": auth_header: Authorization: \"{env.CA_TEST_UNSET_KEY}\" expands to an empty value`,
			`auth_header: Authorization: \"{env.CA_TEST_UNSET_KEY}\" expands to an empty value`, 5},
		{"auth_header template", "bot b {\n\t\t\tauth_url https://a.example\n\t\t\tauth_header Authorization \"Bearer {env.CA_TEST_UNSET_KEY}\"\n\t\t}",
			`bot \"b\": auth_header: Authorization: {env.CA_TEST_UNSET_KEY} in \"Bearer {env.CA_TEST_UNSET_KEY}\" expands to an empty value`,
			`auth_header: Authorization: {env.CA_TEST_UNSET_KEY} in \"Bearer {env.CA_TEST_UNSET_KEY}\" expands to an empty value`, 5},
		{"auth_url", "bot b {\n\t\t\tauth_url {env.CA_TEST_UNSET_URL}\n\t\t}",
			`bot \"b\": auth_url: \"{env.CA_TEST_UNSET_URL}\" expands to an empty value`, `auth_url: \"{env.CA_TEST_UNSET_URL}\" expands to an empty value`, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeCaddyfile(t, ":0 {\n\tcustom_auth {\n\t\t"+tc.inside+"\n\t}\n}\n")
			code, out := runCaddy(t, "validate", "--config", file, "--adapter", "caddyfile")
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d; output lacks %q:\n%s", code, tc.want, out)
			}
			if !logLineHas(out, `"msg":"`+tc.warning, fmt.Sprintf(`"file":%q,"line":%d`, file, tc.line)) {
				t.Errorf("no warning %q at %s:%d:\n%s", tc.warning, file, tc.line, out)
			}
		})
	}
}

// TestBinaryValidateWarnsOfTokenTemplate: a token source the module cannot remove from
// the request, such as `Bearer {…}`, is warned about with its file and line, and the
// config is valid.
func TestBinaryValidateWarnsOfTokenTemplate(t *testing.T) {
	file := writeCaddyfile(t, ":0 {\n\tcustom_auth {\n\t\tbot b {\n\t\t\tauth_url https://a.example\n\t\t}\n"+
		"\t\ttoken \"Bearer {http.request.header.X-Widget-Token}\"\n\t}\n}\n")
	code, out := runCaddy(t, "validate", "--config", file, "--adapter", "caddyfile")
	if code != 0 || !logLineHas(out, `"msg":"token: this source cannot be removed from the request`, fmt.Sprintf(`"file":%q,"line":6`, file)) {
		t.Errorf("exit %d; no warning about the token at %s:6:\n%s", code, file, out)
	}
}

// logLineHas reports whether one line of the output holds every part.
func logLineHas(out string, parts ...string) bool {
	for line := range strings.Lines(out) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}

func TestBinaryCLIExitCodes(t *testing.T) {
	api := newIdentityAPI(t)
	config := cliConfig(t, api)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--bot", "shop", "--token", "alice-token", "--origin", "https://shop.example.com"}, 0, "Result: verified"},
		{[]string{"--bot", "shop", "--token", "wrong-token", "--origin", "https://shop.example.com"}, 1, "reason: rejected"},
		{[]string{"--bot", "shop", "--no-such-flag"}, 2, "unknown flag"},
		{[]string{"--bot", "nobody", "--token", "t"}, 2, "no custom_auth handler knows bot"},
	} {
		code, out := runCaddy(t, append([]string{"custom-auth", "test", "--config", config, "--adapter", "caddyfile"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want %d; output lacks %q:\n%s", tc.args, code, tc.code, tc.want, out)
		}
		if strings.Contains(out, "alice-token") {
			t.Errorf("%v: token printed", tc.args)
		}
	}
}

// TestIntegrationReloadKeepsCache loads the same config twice through Caddy's admin
// API, as `caddy reload` does: the cached identity survives, and a changed auth_url
// does not serve it.
func TestIntegrationReloadKeepsCache(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	loads := 0
	config := func(path string) string {
		loads++
		return testGlobalOptions(loads, "") + fmt.Sprintf(`
		http://localhost:9080 {
			custom_auth {
				cache_size 3MB
				bot shop {
					auth_url %s%s
				}
			}
			reverse_proxy %s
		}`, api.URL, path, strings.TrimPrefix(be.URL, "http://"))
	}
	tester := caddytest.NewTester(t)
	send := func() {
		tester.AssertResponse(gatewayRequest("/chat", "alice-token", ""), http.StatusOK, "backend")
		got, _ := be.received(t)
		if got.Header.Get("X-Contact-Id") != "2" {
			t.Fatalf("not verified: %v", got.Header)
		}
	}
	tester.InitServer(config("/ca"), "caddyfile")
	send()
	tester.InitServer(config("/ca"), "caddyfile")
	send()
	if n := api.calls.Load(); n != 1 {
		t.Errorf("after a reload of the same config: %d API calls, want 1", n)
	}
	tester.InitServer(config("/ca/v2"), "caddyfile")
	send()
	if n := api.calls.Load(); n != 2 {
		t.Errorf("after a reload with a new auth_url: %d API calls, want 2", n)
	}
}

// TestIntegrationJWKS signs with an Ed25519 key file and serves the public key: the
// backend verifies the assertion with the JWKS fetched from the gateway.
func TestIntegrationJWKS(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	keyFile := writeKey(t, key)
	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, "")+fmt.Sprintf(`
	http://localhost:9080 {
		custom_auth {
			sign_key_file %s
			jwks_path /.well-known/custom-auth/jwks.json
			bot shop {
				auth_url %s
			}
		}
		reverse_proxy %s
	}`, keyFile, api.URL, strings.TrimPrefix(be.URL, "http://")), "caddyfile")

	resp, err := tester.Client.Get("http://localhost:9080/.well-known/custom-auth/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %d %s", resp.StatusCode, jwks)
	}
	verifier, err := contact.NewJWKSVerifier(jwks)
	if err != nil {
		t.Fatalf("JWKS %s: %v", jwks, err)
	}

	tester.AssertResponse(gatewayRequest("/chat", "alice-token", ""), http.StatusOK, "backend")
	got, _ := be.received(t)
	claims, err := verifier.Verify(got.Header.Get("X-Contact-Assertion"), "shop")
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	c, err := claims.Contact()
	if err != nil || c.Name != "Nguyễn Văn B" || c.Metadata["order_quantity"] != 3.0 {
		t.Errorf("contact = %+v, %v", c, err)
	}
}
