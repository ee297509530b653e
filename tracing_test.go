package customauth

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracedAPIs is one server that plays every API the module calls (bots_url, a
// bot's whitelist_url and identity API, a JWKS) and records the traceparent each
// call carried, by path.
type tracedAPIs struct {
	*httptest.Server
	mu           sync.Mutex
	traceparents map[string][]string
}

func newTracedAPIs(t *testing.T, jwksKey signingKey) *tracedAPIs {
	apis := &tracedAPIs{traceparents: map[string][]string{}}
	apis.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apis.mu.Lock()
		apis.traceparents[r.URL.Path] = append(apis.traceparents[r.URL.Path], r.Header.Get("Traceparent"))
		apis.mu.Unlock()
		switch r.URL.Path {
		case "/bots/api-bot":
			fmt.Fprintf(w, `{"auth_url":%q,"whitelist_url":{"url":%q},"cache_ttl":0}`, apis.URL+"/ca", apis.URL+"/wl")
		case "/wl":
			io.WriteString(w, `["shop.example.com"]`)
		case "/ca":
			io.WriteString(w, `{"data":`+aliceData+`}`)
		case "/jwks":
			io.WriteString(w, `{"keys":[`+jwksKey.jwk+`]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(apis.Close)
	return apis
}

// received is the traceparent of each call to a path, in order; "" for a call that
// carried none.
func (apis *tracedAPIs) received(path string) []string {
	apis.mu.Lock()
	defer apis.mu.Unlock()
	return apis.traceparents[path]
}

// TestAPICallsAreClientSpansOfTheRequest: a request whose context carries a span
// (as Caddy's tracing handler gives it) makes each of its API calls (bots_url,
// whitelist_url, the identity API, jwks_url) a client span under that span, in the
// span's own tracer provider (no global one is set), and sends that client span as
// traceparent. A request with no span sends none and records nothing.
func TestAPICallsAreClientSpansOfTheRequest(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { provider.Shutdown(context.Background()) })
	key := newRSAKey("trace-key")
	apis := newTracedAPIs(t, key)
	h := provision(t, &Handler{
		BotsURL: &BotsSource{URL: apis.URL + "/bots", AllowPrivate: true},
		Bots:    map[string]*Bot{"jwt-bot": {VerifyJWT: &JWTSettings{JWKSURL: apis.URL + "/jwks"}}},
	})

	for _, tc := range []struct {
		bot, token string
		paths      []string
	}{
		{"api-bot", "alice-token", []string{"/bots/api-bot", "/wl", "/ca"}},
		{"jwt-bot", key.sign(t, claimsFor("jwt-bot", time.Now(), nil)), []string{"/jwks"}},
	} {
		ctx, request := provider.Tracer("test").Start(context.Background(), "request", trace.WithSpanKind(trace.SpanKindServer))
		out := h.identify(ctx, visit{botID: tc.bot, token: tc.token, origin: "https://shop.example.com"})
		request.End()
		if outcomeText(out) != "verified/" {
			t.Fatalf("%s: %s (%v)", tc.bot, outcomeText(out), out.err)
		}
		for _, path := range tc.paths {
			got := apis.received(path)
			if len(got) != 1 {
				t.Fatalf("%s: %d calls, want 1", path, len(got))
			}
			span := spanOfTraceparent(t, recorder, got[0])
			if span == nil {
				t.Errorf("%s: traceparent %q is no span the request's provider recorded", path, got[0])
				continue
			}
			if span.Parent().SpanID() != request.SpanContext().SpanID() || span.SpanContext().TraceID() != request.SpanContext().TraceID() {
				t.Errorf("%s: span %s has parent %s, want the request's span %s", path, span.SpanContext().SpanID(), span.Parent().SpanID(), request.SpanContext().SpanID())
			}
			if span.SpanKind() != trace.SpanKindClient || span.Name() != "custom_auth "+map[bool]string{true: "POST", false: "GET"}[path == "/ca"] {
				t.Errorf("%s: span %q of kind %s", path, span.Name(), span.SpanKind())
			}
		}
	}

	// No span, no tracing: the identity API of a second visitor gets no traceparent.
	spans := len(recorder.Ended())
	if out := h.identify(context.Background(), visit{botID: "api-bot", token: "bob-token", origin: "https://shop.example.com"}); outcomeText(out) != "verified/" {
		t.Fatalf("untraced request: %s (%v)", outcomeText(out), out.err)
	}
	if got := apis.received("/ca"); len(got) != 2 || got[1] != "" {
		t.Errorf("untraced request: the identity API got traceparents %q", got)
	}
	if n := len(recorder.Ended()) - spans; n != 0 {
		t.Errorf("untraced request: %d spans recorded", n)
	}

	// A trace its caller did not sample is passed on, unsampled.
	caller := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35}, SpanID: trace.SpanID{0xf0, 0x67}, Remote: true,
	})
	ctx, request := provider.Tracer("test").Start(trace.ContextWithRemoteSpanContext(context.Background(), caller), "request")
	h.identify(ctx, visit{botID: "api-bot", token: "carol-token", origin: "https://shop.example.com"})
	request.End()
	if got := apis.received("/ca"); len(got) != 3 || !strings.HasPrefix(got[2], "00-"+caller.TraceID().String()+"-") || !strings.HasSuffix(got[2], "-00") {
		t.Errorf("unsampled trace %s: the identity API got traceparents %q", caller.TraceID(), got)
	}
}

// spanOfTraceparent finds the recorded span that a traceparent header names.
func spanOfTraceparent(t *testing.T, recorder *tracetest.SpanRecorder, traceparent string) sdktrace.ReadOnlySpan {
	t.Helper()
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || parts[0] != "00" {
		return nil
	}
	for _, span := range recorder.Ended() {
		if span.SpanContext().TraceID().String() == parts[1] && span.SpanContext().SpanID().String() == parts[2] {
			return span
		}
	}
	return nil
}

// TestClientClosesIdleConnections: the tracing wrapper passes
// CloseIdleConnections on, so that Cleanup still closes an unloaded config's
// connections.
func TestClientClosesIdleConnections(t *testing.T) {
	closed := make(chan struct{}, 1)
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	api.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateClosed {
			closed <- struct{}{}
		}
	}
	api.Start()
	t.Cleanup(api.Close)
	client := newAPIClient()
	if _, err := callAPI(context.Background(), client, http.MethodGet, api.URL, nil, nil, 10); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection is still open")
	}
}

// BenchmarkIdentityCall is one identity API call (a verified answer, over loopback)
// through the bot's client: with the bare transport, through the tracing wrapper
// with no span in the context (tracing off), and within a sampled span.
func BenchmarkIdentityCall(b *testing.B) {
	api := newIdentityAPI(b)
	h := provision(b, &Handler{Bots: map[string]*Bot{"shop": {AuthURL: api.URL}}})
	wrapped := h.bots["shop"]
	bare := *wrapped
	bare.client = &http.Client{Transport: wrapped.client.Transport.(*tracedTransport).base, CheckRedirect: wrapped.client.CheckRedirect}
	provider := sdktrace.NewTracerProvider() // records, exports nowhere
	b.Cleanup(func() { provider.Shutdown(context.Background()) })
	traced, span := provider.Tracer("bench").Start(context.Background(), "request")
	defer span.End()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	client := &identityClient{config: ctx, metrics: h.env.metrics}

	for _, bc := range []struct {
		name string
		bot  *botSettings
		ctx  context.Context
	}{
		{"bare", &bare, context.Background()},
		{"wrapped", wrapped, context.Background()},
		{"wrapped+span", wrapped, traced},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res := client.identify(bc.ctx, bc.bot, identityRequest{token: "alice-token"}); res.kind != verdictVerified {
					b.Fatalf("not verified: %v", res.err)
				}
			}
		})
	}
}

// BenchmarkTracedTransportNoSpan is what the tracing wrapper adds to a call with
// no span in its context, apart from the network: a RoundTrip to a transport that
// answers at once, bare, wrapped, and through otelhttp's transport, which the
// wrapper skips for such calls.
func BenchmarkTracedTransportNoSpan(b *testing.B) {
	answer := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { return answer, nil })
	req := httptest.NewRequest(http.MethodPost, "http://api.example.com/ca", nil)
	wrapped := newTracedTransport(base)
	for name, rt := range map[string]http.RoundTripper{"bare": base, "wrapped": wrapped, "otelhttp": wrapped.traced} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := rt.RoundTrip(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
