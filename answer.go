package customauth

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// writeAnswer tells the proxy that asked (nginx's auth_request) the verdict, instead of
// passing the request on: 200 with the headers the backend is to receive and the
// outcome's status and reason, or, with on_fail reject, the 401 problem for a fallback
// that rejects. The proxy copies the headers onto the request it passes on. Only the
// handler's own headers are set: nothing the client sent, never the token.
func writeAnswer(w http.ResponseWriter, out *outcome, contact *contactHeaders, reject bool, now func() time.Time) error {
	header := w.Header()
	if out.status == statusVerified {
		if err := contact.inject(header, out, now); err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
	}
	header[contact.names.status] = []string{out.status.String()}
	if out.reason != "" {
		header[contact.names.reason] = []string{string(out.reason)}
	}
	if out.rejects(reject) {
		return writeProblem(w, out.reason)
	}
	// Who a token belongs to is personal data: a cache on the way stores it only when
	// its operator says so (nginx: proxy_ignore_headers Cache-Control).
	header["Cache-Control"] = []string{"no-store"} // its own: a later handler may change it
	w.WriteHeader(http.StatusOK)
	return nil
}
