package customauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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
		{"header_prefix strips X-Original-URI in answer mode", "header_prefix X-Original-\nanswer", `would strip X-Original-URI, which the module reads, at Testfile:2`},
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
		{"answer with argument", "answer nginx", `wrong argument count`},
		{"answer twice", "answer\nanswer", `answer: given twice`},
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

// caddyfileBlocks places a subdirective in each block of custom_auth.
var caddyfileBlocks = []struct {
	name  string
	block block
	wrap  func(inside string) string
}{
	{"handler", handlerBlock, func(in string) string { return in }},
	{"bot", botBlock, func(in string) string { return "bot b {\n" + in + "\n}" }},
	{"whitelist_url", whitelistURLBlock, func(in string) string {
		return "bot b {\nauth_url https://a.example\nwhitelist_url https://a.example/d {\n" + in + "\n}\n}"
	}},
	{"bots_url", botsURLBlock, func(in string) string { return "bots_url https://a.example {\n" + in + "\n}" }},
	{"verify_jwt", verifyJWTBlock, func(in string) string { return "bot b {\nverify_jwt {\n" + in + "\n}\n}" }},
	{"shared_cache", sharedCacheBlock, func(in string) string { return "shared_cache redis://cache.internal {\n" + in + "\n}" }},
	{"circuit_breaker", circuitBreakerBlock, func(in string) string {
		return "bot b {\nauth_url https://a.example\ncircuit_breaker {\n" + in + "\n}\n}"
	}},
}

// TestCaddyfileDidYouMean: a misspelt subdirective, at every block level, is refused
// with its line and the subdirective it is closest to; one far from all is refused
// without a guess.
func TestCaddyfileDidYouMean(t *testing.T) {
	typos := map[string][2]string{ // block: typo, meant
		"handler":         {"whitelst", ""},
		"bot":             {"whitelst", "whitelist"},
		"whitelist_url":   {"refesh", "refresh"},
		"bots_url":        {"max_timeot", "max_timeout"},
		"verify_jwt":      {"isuer", "issuer"},
		"shared_cache":    {"timeuot", "timeout"},
		"circuit_breaker": {"failure", "failures"},
	}
	for _, b := range caddyfileBlocks {
		typo, meant := typos[b.name][0], typos[b.name][1]
		t.Run(b.name, func(t *testing.T) {
			var h Handler
			input := "custom_auth {\n" + b.wrap(typo+" 1") + "\n}"
			line := strings.Count(input[:strings.Index(input, typo)], "\n") + 1
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
			want := fmt.Sprintf("unrecognized %s '%s'", strings.TrimSpace(b.block.name+" subdirective"), typo)
			if meant != "" {
				want += fmt.Sprintf("; did you mean '%s'?", meant)
			}
			want += fmt.Sprintf(", at Testfile:%d", line)
			if err == nil || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("error %v, want it to end with %q", err, want)
			}
		})
	}
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("custom_auth {\nbots 1\n}"))
	if err == nil || !strings.Contains(err.Error(), "unrecognized subdirective 'bots'; did you mean 'bot'?") {
		t.Errorf("bots: %v", err)
	}
}

// TestCaddyfileBlocksReadWhatTheyList: every subdirective a block lists is read by a
// case of its parser, so the list that "did you mean" and "given twice" use is the one
// the parser accepts.
func TestCaddyfileBlocksReadWhatTheyList(t *testing.T) {
	for _, b := range caddyfileBlocks {
		for _, name := range slices.Concat(b.block.once, b.block.repeatable) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("custom_auth {\n" + b.wrap(name) + "\n}"))
			if errors.Is(err, errNoCase) || err != nil && strings.Contains(err.Error(), "unrecognized") {
				t.Errorf("%s: %s: %v", b.name, name, err)
			}
		}
	}
}

// caddyfileWarnings records what the Caddyfile parser warns about while the test runs.
func caddyfileWarnings(t *testing.T) *observer.ObservedLogs {
	core, logs := observer.New(zapcore.WarnLevel)
	caddyfileLogger = func() *zap.Logger { return zap.New(core) }
	t.Cleanup(func() { caddyfileLogger = caddy.Log })
	return logs
}

// TestCaddyfileWarnsWithTheLine: a value that expands to nothing here (an unset
// {env.X}) and a token source that cannot be removed from the request are warned
// about with the file and line they are written at; the config is not refused for it,
// as it may run where the variable is set.
func TestCaddyfileWarnsWithTheLine(t *testing.T) {
	const unset = "{env.CA_TEST_SURELY_UNSET}"
	for _, tc := range []struct {
		name, input, want string
		line              int
	}{
		{"sign_key", "sign_key " + unset, `sign_key: "` + unset + `" expands to an empty value`, 2},
		{"sign_key_file", "sign_key_file " + unset, `sign_key_file: "` + unset + `" expands to an empty value`, 2},
		{"shared_cache", "shared_cache " + unset, `shared_cache: "` + unset + `" expands to an empty value`, 2},
		{"bots_url", "bots_url " + unset, `bots_url: "` + unset + `" expands to an empty value`, 2},
		{"bots_url header", "bots_url https://a.example {\nheader X-Key " + unset + "\n}", `header: X-Key: "` + unset + `" expands to an empty value`, 3},
		{"auth_url", "bot b {\nauth_url " + unset + "\n}", `auth_url: "` + unset + `" expands to an empty value`, 3},
		{"auth_header", "bot b {\nauth_url https://a.example\nauth_header Authorization " + unset + "\n}",
			`auth_header: Authorization: "` + unset + `" expands to an empty value`, 4},
		{"whitelist_url", "bot b {\nauth_url https://a.example\nwhitelist_url " + unset + "\n}", `whitelist_url: "` + unset + `" expands to an empty value`, 4},
		{"verify_jwt secret", "bot b {\nverify_jwt {\nsecret " + unset + "\n}\n}", `verify_jwt: "` + unset + `" expands to an empty value`, 4},
		{"auth_header template", "bot b {\nauth_url https://a.example\nauth_header Authorization \"Bearer " + unset + "\"\n}",
			`auth_header: Authorization: ` + unset + ` in "Bearer ` + unset + `" expands to an empty value`, 4},
		{"verify_jwt issuer", "bot b {\nverify_jwt {\njwks_url https://a.example/jwks\nissuer " + unset + "\n}\n}", `issuer: "` + unset + `" expands to an empty value`, 5},
		{"token template", "pass_token\ntoken \"Bearer {http.request.header.X-T}\"\nbot b {\noff\n}",
			"", 0}, // pass_token: no warning
		{"token template, pass_token later", "token \"Bearer {http.request.header.X-T}\"\nbot b {\noff\n}",
			"token: this source cannot be removed from the request; the backend may see the token", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := caddyfileWarnings(t)
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("custom_auth {\n" + tc.input + "\n}")); err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if logs.Len() != 0 {
					t.Errorf("warned: %v", logs.All()[0].Message)
				}
				return
			}
			if logs.Len() != 1 {
				t.Fatalf("%d warnings, want 1", logs.Len())
			}
			w := logs.All()[0]
			fields := w.ContextMap()
			if w.Message != tc.want || fields["file"] != "Testfile" || fields["line"] != int64(tc.line) {
				t.Errorf("warning %q %v, want %q at Testfile:%d", w.Message, fields, tc.want, tc.line)
			}
		})
	}
}
