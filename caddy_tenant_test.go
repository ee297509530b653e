package customauth

// Integration tests of what tenants (the authors of bots_url's answers) can reach,
// through a real Caddy. See caddy_test.go for the helpers and the fixed ports.

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestIntegrationTenantCannotReachTheGateway: a remote bot whose auth_url is Caddy's
// admin endpoint (`POST /stop` would shut the gateway down) or a server on 127.0.0.1
// falls back with error, and neither is reached: the gateway and its admin endpoint
// keep working. With allow_private, the server on 127.0.0.1 is reached.
func TestIntegrationTenantCannotReachTheGateway(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	bots := newBotsAPI(t)
	bots.set("admin", `{"auth_url":"http://localhost:2999/stop","cache_ttl":0}`)
	bots.set("loopback", fmt.Sprintf(`{"auth_url":%q}`, api.URL+"/ca"))
	loads := 0
	config := func(botsURLOptions string) string {
		loads++
		return testGlobalOptions(loads, "") + fmt.Sprintf(`
		http://localhost:9080 {
			custom_auth {
				bots_url %s/bots {
					%s
				}
			}
			reverse_proxy %s {
				header_up X-Custom-Auth-Reason {http.custom_auth.reason}
			}
		}`, bots.URL, botsURLOptions, strings.TrimPrefix(be.URL, "http://"))
	}
	tester := caddytest.NewTester(t)
	tester.InitServer(config(""), "caddyfile")

	reason := func(bot string) string {
		t.Helper()
		req := gatewayRequest("/chat", "alice-token", "")
		req.Header.Set("X-Bot-Id", bot)
		tester.AssertResponse(req, http.StatusOK, "backend")
		got, _ := be.received(t)
		return got.Header.Get("X-Custom-Auth-Reason")
	}
	for range 3 {
		if r := reason("admin"); r != "error" {
			t.Errorf("auth_url on the admin endpoint: reason %q", r)
		}
	}
	resp, err := tester.Client.Get("http://localhost:2999/config/")
	if err != nil {
		t.Fatalf("the admin endpoint is gone: %v", err)
	}
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(cfg), "custom_auth") {
		t.Errorf("admin endpoint: %d %s", resp.StatusCode, cfg)
	}
	if r := reason("loopback"); r != "error" {
		t.Errorf("auth_url on 127.0.0.1: reason %q", r)
	}
	if n := api.calls.Load(); n != 0 {
		t.Fatalf("a tenant URL reached 127.0.0.1: %d calls", n)
	}

	tester.InitServer(config("allow_private"), "caddyfile")
	if r := reason("loopback"); r != "" {
		t.Errorf("auth_url on 127.0.0.1 with allow_private: reason %q", r)
	}
	if n := api.calls.Load(); n != 1 {
		t.Errorf("with allow_private: %d calls, want 1", n)
	}
}
