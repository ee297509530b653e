package customauth

// Integration test of tracing through a real Caddy with its `tracing` handler. See
// caddy_test.go for the helpers and the fixed ports.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestIntegrationTracingReachesTheIdentityAPI: with Caddy's `tracing` on, a request
// that comes with a traceparent makes its identity API call a span of the same
// trace: the API receives a traceparent with the visitor's trace id, sampled, and a
// span id of its own (neither the caller's nor Caddy's server span, which the
// backend receives). With tracing off, the API receives no traceparent, though the
// visitor sent one.
func TestIntegrationTracingReachesTheIdentityAPI(t *testing.T) {
	// No exporter: the SDK's default would send spans to localhost:4318.
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	api := newIdentityAPI(t)
	be := newBackend(t)
	loads := 0
	config := func(tracing string) string {
		loads++
		return testGlobalOptions(loads, "") + fmt.Sprintf(`
		http://localhost:9080 {
			%s
			custom_auth {
				bot shop {
					auth_url %s/ca
					cache_ttl 0
				}
			}
			reverse_proxy %s
		}`, tracing, api.URL, strings.TrimPrefix(be.URL, "http://"))
	}
	const (
		traceID      = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpanID = "00f067aa0ba902b7"
	)
	tracedRequest := func() *http.Request {
		req := gatewayRequest("/chat", "alice-token", "")
		req.Header.Set("Traceparent", "00-"+traceID+"-"+callerSpanID+"-01")
		return req
	}
	tester := caddytest.NewTester(t)

	tester.InitServer(config("tracing"), "caddyfile")
	tester.AssertResponse(tracedRequest(), http.StatusOK, "backend")
	got := strings.Split(api.lastHeader(t).Get("Traceparent"), "-")
	if len(got) != 4 || got[0] != "00" || got[1] != traceID || got[3] != "01" {
		t.Fatalf("the identity API got traceparent %q, want trace %s, sampled", strings.Join(got, "-"), traceID)
	}
	seen, _ := be.received(t)
	server := strings.Split(seen.Header.Get("Traceparent"), "-")
	if len(server) != 4 || server[1] != traceID {
		t.Fatalf("the backend got traceparent %q, want Caddy's server span of trace %s", seen.Header.Get("Traceparent"), traceID)
	}
	if got[2] == callerSpanID || got[2] == server[2] {
		t.Errorf("the identity API call has span id %s, the caller's is %s and Caddy's server span's %s: want one of its own", got[2], callerSpanID, server[2])
	}

	tester.InitServer(config(""), "caddyfile")
	tester.AssertResponse(tracedRequest(), http.StatusOK, "backend")
	if tp := api.lastHeader(t).Get("Traceparent"); tp != "" {
		t.Errorf("tracing off: the identity API got traceparent %q", tp)
	}
	if n := api.calls.Load(); n != 2 {
		t.Errorf("%d identity API calls, want 2", n)
	}
}
