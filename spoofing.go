package customauth

import (
	"io"
	"net/http"

	"github.com/custom-auth/custom_auth/contact"
)

// stripSpoofing removes what a client sent that could pass for a contact header: the
// headers (contact.StripHeaders), and the trailers, now and again when the body ends.
//
// net/http fills the request's trailers only when a read of the body reaches EOF,
// merging them into the r.Trailer map the client declared (undeclared names
// included), long after this handler has run; reverse_proxy copies that same map for
// the upstream in the read that returns EOF. So the trailers are stripped in that read
// too, before EOF is returned. A request that declared no trailers has a nil r.Trailer,
// and any trailer it sends lands only on net/http's own request, which Caddy has
// already copied from: nothing to watch, so its body is left as it is.
func stripSpoofing(r *http.Request, prefix string) {
	contact.StripHeaders(r.Header, prefix)
	if r.Trailer == nil || r.Body == nil {
		return
	}
	contact.StripHeaders(r.Trailer, prefix)
	r.Body = &trailerStrippingBody{ReadCloser: r.Body, trailer: r.Trailer, prefix: prefix}
}

// trailerStrippingBody strips the contact trailers from trailer when the body it
// wraps ends, which is when net/http has just filled trailer.
type trailerStrippingBody struct {
	io.ReadCloser
	trailer http.Header
	prefix  string
}

func (b *trailerStrippingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		contact.StripHeaders(b.trailer, b.prefix)
	}
	return n, err
}
