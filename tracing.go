package customauth

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracedTransport makes each API call of a traced request a client span under the
// request's span, and sends the W3C `traceparent` of that span to the API.
//
// Caddy's `tracing` handler puts the request's server span in the request's context,
// but sets no global tracer provider and no global propagator. So the span's own
// provider is used (otelhttp takes it from the context when given none), and the
// propagator is named here: with the global one, nothing would be sent.
//
// A call whose context carries no span (tracing off, or a background refresh, which
// runs under the config's context) goes straight to the base transport: it costs
// one context lookup, and starts no span.
type tracedTransport struct {
	base   http.RoundTripper
	traced http.RoundTripper
}

func newTracedTransport(base http.RoundTripper) *tracedTransport {
	return &tracedTransport{
		base: base,
		traced: otelhttp.NewTransport(base,
			otelhttp.WithPropagators(propagation.TraceContext{}),
			otelhttp.WithSpanNameFormatter(apiSpanName),
		),
	}
}

// RoundTrip traces the call when its context carries a span, sampled or not: an
// unsampled trace still passes its trace id on, and the API's spans join it.
func (t *tracedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if trace.SpanContextFromContext(req.Context()).IsValid() {
		return t.traced.RoundTrip(req)
	}
	return t.base.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the base
// transport when a config is unloaded.
func (t *tracedTransport) CloseIdleConnections() {
	if closer, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		closer.CloseIdleConnections()
	}
}

// apiSpanName names a call's span for the module and the method; the span's
// attributes tell the URL (without its user:password) and the status.
func apiSpanName(_ string, req *http.Request) string {
	return "custom_auth " + req.Method
}

// Interface guards
var _ http.RoundTripper = (*tracedTransport)(nil)
