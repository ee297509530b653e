package customauth

import (
	"net/http/httptest"
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
