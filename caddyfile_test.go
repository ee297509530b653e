package customauth

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`
	custom_auth {
		bot_id {http.request.uri.query.bot}
		token {http.request.header.Authorization}
		origin {http.request.header.X-Origin}
		field locale {http.request.header.Accept-Language}
		header_prefix X-Visitor-
		sign_key {env.CA_SIGN_KEY}
		assertion_ttl 2m
		cache_size 16MB
		on_fail reject
		bots_url https://chat.example.com/api/bots {
			header X-Api-Key {env.BOTS_KEY}
			ttl 30s
		}
		bot shop {
			auth_url https://api.example.com/ca
			auth_header Authorization "Bearer {env.CA_TOKEN}"
			auth_header X-Tenant 7
			forward user_id email locale
			identify_by email
			timeout 2s
			cache_ttl 0
			negative_ttl 10s
			whitelist example.com *.example.com
			whitelist https://shop.example.net:8443
			whitelist_url https://api.example.com/domains {
				header X-Key k
				refresh 1m
			}
			circuit_breaker {
				failures 3
				open_for 20s
			}
		}
		bot quiet {
			off
		}
		bot * {
			auth_url http://127.0.0.1:9001/ca
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"bot_id":"{http.request.uri.query.bot}","token":"{http.request.header.Authorization}","origin":"{http.request.header.X-Origin}",` +
		`"fields":{"locale":"{http.request.header.Accept-Language}"},"header_prefix":"X-Visitor-","sign_key":"{env.CA_SIGN_KEY}",` +
		`"assertion_ttl":120000000000,"cache_size":16000000,"on_fail":"reject",` +
		`"bots_url":{"url":"https://chat.example.com/api/bots","headers":{"X-Api-Key":"{env.BOTS_KEY}"},"ttl":30000000000},` +
		`"bots":{"*":{"auth_url":"http://127.0.0.1:9001/ca"},"quiet":{"off":true},` +
		`"shop":{"auth_url":"https://api.example.com/ca","auth_headers":{"Authorization":"Bearer {env.CA_TOKEN}","X-Tenant":"7"},` +
		`"forward":["user_id","email","locale"],"identify_by":"email","timeout":2000000000,"cache_ttl":0,"negative_ttl":10000000000,` +
		`"whitelist":["example.com","*.example.com","https://shop.example.net:8443"],` +
		`"whitelist_url":{"url":"https://api.example.com/domains","headers":{"X-Key":"k"},"refresh":60000000000},` +
		`"circuit_breaker":{"failures":3,"open_for":20000000000}}}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	// Each input is the inside of a custom_auth block.
	for _, tc := range []struct {
		name, input, wantErr string
	}{
		{"missing auth_url", "bot b {\nforward user_id\n}", `bot "b": auth_url is required`},
		{"unknown identify_by", "bot b {\nauth_url https://a.example/ca\nidentify_by username\n}", `identify_by: must be id, email or phone_number, not "username"`},
		{"bad duration", "bot b {\nauth_url https://a.example/ca\ntimeout soon\n}", `timeout: invalid duration "soon"`},
		{"negative duration", "bot b {\nauth_url https://a.example/ca\ncache_ttl -1s\n}", `cache_ttl: must not be negative`},
		{"relative URL", "bot b {\nauth_url /ca\n}", `auth_url: "/ca" must be an absolute http or https URL`},
		{"ftp URL", "bot b {\nauth_url ftp://a.example/ca\n}", `must be an absolute http or https URL`},
		{"URL without host", "bot b {\nauth_url http:///ca\n}", `has no host`},
		{"bad whitelist_url", "bot b {\nauth_url https://a.example\nwhitelist_url example.com\n}", `whitelist_url: "example.com" must be an absolute http or https URL`},
		{"bad bots_url", "bots_url chat.example.com", `bots_url: "chat.example.com" must be an absolute`},
		{"unknown subdirective", "bots https://x", `unrecognized subdirective 'bots'`},
		{"unknown bot subdirective", "bot b {\nauth_url https://a.example\ncache 1m\n}", `unrecognized bot subdirective 'cache'`},
		{"unknown whitelist_url subdirective", "bot b {\nauth_url https://a.example\nwhitelist_url https://a.example/d {\nevery 1m\n}\n}", `unrecognized whitelist_url subdirective 'every'`},
		{"unknown bots_url subdirective", "bots_url https://a.example {\nrefresh 1m\n}", `unrecognized bots_url subdirective 'refresh'`},
		{"duplicate bot", "bot b {\noff\n}\nbot b {\noff\n}", `bot "b": configured twice`},
		{"unknown forwarded field", "bot b {\nauth_url https://a.example\nforward user_id nickname\n}", `forward: unknown field "nickname"`},
		{"bad on_fail", "on_fail block", `on_fail: must be fallback or reject, not "block"`},
		{"bad cache_size", "cache_size lots", `cache_size: invalid size "lots"`},
		{"short sign_key", "sign_key short", `sign_key: an HS256 key must be at least 32 bytes`},
		{"bad whitelist entry", "bot b {\nauth_url https://a.example\nwhitelist example.com foo.*.example.com\n}", `foo.*.example.com`},
		{"bad header name", "bot b {\nauth_url https://a.example\nauth_header \"Bad Name\" x\n}", `auth_header: invalid header name "Bad Name"`},
		{"bad header_prefix", "header_prefix \"X Contact\"", `header_prefix:`},
		{"field without source", "field locale", `wrong argument count`},
		{"off with argument", "bot b {\noff now\n}", `wrong argument count`},
		{"bad failures", "bot b {\nauth_url https://a.example\ncircuit_breaker {\nfailures zero\n}\n}", `failures: must be a whole number`},
		{"jwks_path not a path", "jwks_path jwks.json", `jwks_path: must start with /`},
		{"header_prefix too short", "header_prefix X-", `header_prefix: "X-" is shorter than 5 characters, at Testfile:2`},
		{"header_prefix strips the bot id", "header_prefix X-Bot-", `header_prefix: "X-Bot-" would strip X-Bot-Id, which the module reads, at Testfile:2`},
		{"header_prefix strips a source declared later", "header_prefix X-Widget-\ntoken {http.request.header.X-Widget-Token}", `would strip X-Widget-Token, which the module reads, at Testfile:2`},
		{"header_prefix strips a standard header", "header_prefix Authorization", `would strip the standard header Authorization`},
		{"header_prefix strips Content-", "header_prefix Content-", `would strip the standard header Content-`},
		{"auth_url twice", "bot b {\nauth_url https://a.example/one\nauth_url https://a.example/two\n}", `auth_url: given twice, at Testfile:4`},
		{"token twice", "token {http.request.header.A}\ntoken {http.request.header.B}", `token: given twice`},
		{"sign_key twice", "sign_key 0123456789abcdef0123456789abcdef\nsign_key 0123456789abcdef0123456789abcdef", `sign_key: given twice`},
		{"timeout twice", "bot b {\nauth_url https://a.example\ntimeout 1s\ntimeout 2s\n}", `timeout: given twice`},
		{"whitelist_url twice", "bot b {\nauth_url https://a.example\nwhitelist_url https://a.example/1\nwhitelist_url https://a.example/2\n}", `whitelist_url: given twice`},
		{"field twice", "field locale {http.request.header.A}\nfield locale {http.request.header.B}", `field locale: given twice`},
		{"auth_header twice", "bot b {\nauth_url https://a.example\nauth_header X-Key a\nauth_header X-Key b\n}", `auth_header X-Key: given twice`},
		{"empty auth_header value", "bot b {\nauth_url https://a.example\nauth_header X-Key \"\"\n}", `auth_header X-Key: the value is empty`},
		{"empty bot id", "bot \"\" {\noff\n}", `bot: the id must not be empty`},
		{"field access_token", "field access_token {http.request.header.X-T}", `field: access_token is the token's name`},
		{"pass_token with argument", "pass_token yes", `wrong argument count`},
		{"token without source", "token", `wrong argument count`},
		{"bots_url max_in_flight zero", "bots_url https://a.example {\nmax_in_flight 0\n}", `max_in_flight: must be a whole number of at least 1, not "0", at Testfile:3`},
		{"bots_url max_in_flight not a number", "bots_url https://a.example {\nmax_in_flight many\n}", `max_in_flight: must be a whole number of at least 1, not "many"`},
		{"bots_url max_in_flight without a number", "bots_url https://a.example {\nmax_in_flight\n}", `wrong argument count`},
		{"bots_url ttl twice", "bots_url https://a.example {\nttl 1m\nttl 2m\n}", `ttl: given twice`},
	} {
		tc.input = "custom_auth {\n" + tc.input + "\n}"
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %q does not name the file and line", err)
			}
		})
	}
}

// TestForwardedFieldDeclaredLater accepts a field that is declared after the bot
// that forwards it.
func TestForwardedFieldDeclaredLater(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`custom_auth {
		bot b {
			auth_url https://a.example
			forward locale
		}
		field locale {http.request.header.Accept-Language}
	}`))
	if err != nil {
		t.Fatal(err)
	}
}

// TestCaddyfileAdapt adapts each testdata/adapt/*.caddyfiletest (a Caddyfile, a line
// of dashes, the JSON it must give) like Caddy's own adapt tests.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests found: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfileText, jsonText, ok := strings.Cut(string(data), "\n----------\n")
			if !ok {
				t.Fatalf("%s has no ---------- separator", file)
			}
			if !caddytest.CompareAdapt(t, file, caddyfileText, "caddyfile", strings.TrimSpace(jsonText)) {
				t.Errorf("%s: adapted JSON differs", file)
			}
		})
	}
}
