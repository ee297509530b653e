package customauth

import (
	"fmt"
	"net/http"
	"net/textproto"
	"time"

	"github.com/custom-auth/custom_auth/contact"
	"golang.org/x/net/http/httpguts"
)

// minHeaderPrefixLength is the shortest header_prefix: a shorter one, such as `X-`,
// would strip far more than contact headers.
const minHeaderPrefixLength = 5

// standardRequestHeaders are request headers a header_prefix must never strip.
var standardRequestHeaders = []string{
	"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language",
	"Access-Control-Request-Headers", "Access-Control-Request-Method", "Authorization",
	"Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Type",
	"Cookie", "Date", "Dnt", "Early-Data", "Expect", "Forwarded", "From", "Host",
	"If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
	"Keep-Alive", "Max-Forwards", "Origin", "Pragma", "Priority", "Proxy-Authorization",
	"Range", "Referer", "Sec-Ch-Ua", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
	"Sec-Fetch-User", "Sec-Websocket-Extensions", "Sec-Websocket-Key",
	"Sec-Websocket-Protocol", "Sec-Websocket-Version", "Te", "Traceparent", "Tracestate",
	"Trailer", "Transfer-Encoding", "Upgrade", "Upgrade-Insecure-Requests", "User-Agent",
	"Via", "Warning", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Real-Ip", "X-Requested-With",
}

// checkHeaderPrefix accepts a prefix that strips contact headers and nothing else: the
// start of a valid header name, at least minHeaderPrefixLength long, and not the start
// of a header the handler reads (readHeaders) or of a standard request header.
func checkHeaderPrefix(prefix string, readHeaders []string) error {
	if !httpguts.ValidHeaderFieldName(prefix) {
		return fmt.Errorf("header_prefix: %q is not the start of a valid header name", prefix)
	}
	if len(prefix) < minHeaderPrefixLength {
		return fmt.Errorf("header_prefix: %q is shorter than %d characters", prefix, minHeaderPrefixLength)
	}
	for _, name := range readHeaders {
		if contact.HasPrefix(name, prefix) {
			return fmt.Errorf("header_prefix: %q would strip %s, which the module reads", prefix, name)
		}
	}
	for _, name := range standardRequestHeaders {
		if contact.HasPrefix(name, prefix) {
			return fmt.Errorf("header_prefix: %q would strip the standard header %s", prefix, name)
		}
	}
	return nil
}

// contactHeaderNames are the names of the headers the handler sets, in canonical form
// so that they can be set without canonicalising them on every request.
type contactHeaderNames struct {
	fields     []string // by index of contact.Fields
	identifyBy string
	assertion  string
	status     string // in answer mode
	reason     string // in answer mode
}

func newContactHeaderNames(prefix string) contactHeaderNames {
	name := func(field string) string {
		return textproto.CanonicalMIMEHeaderKey(contact.HeaderName(prefix, field))
	}
	names := contactHeaderNames{identifyBy: name("identify_by"), assertion: name("assertion"), status: name("status"), reason: name("reason")}
	for _, field := range contact.Fields {
		names.fields = append(names.fields, name(field))
	}
	return names
}

// contactHeaders writes what the backend receives of a verified visitor: the contact
// headers, and the signed assertion when a key is configured.
type contactHeaders struct {
	names      contactHeaderNames
	assertions *assertionSigner // nil without a signing key
}

// inject sets the contact headers of a verified visitor, and the assertion issued at
// now(), in the request passed on or in the answer to another proxy. The values were
// encoded when the identity was verified, and all of them share one allocation.
func (c *contactHeaders) inject(header http.Header, out *outcome, now func() time.Time) error {
	id := out.identity
	n := id.headerCount()
	values := make([]string, n+2)
	i := 0
	for field := range contactFieldCount {
		if value, ok := id.header(field); ok {
			values[i] = value
			header[c.names.fields[field]] = values[i : i+1 : i+1]
			i++
		}
	}
	values[n] = out.bot.identifyBy // id, email or phone_number (primaryFieldOf): no encoding changes it
	header[c.names.identifyBy] = values[n : n+1 : n+1]
	if c.assertions == nil {
		return nil
	}
	token, err := c.assertions.sign(out.botID, id.primary(), out.bot.identifyBy, id.raw(), now())
	if err != nil {
		return fmt.Errorf("signing the contact assertion: %w", err)
	}
	values[n+1] = token
	header[c.names.assertion] = values[n+1 : n+2 : n+2]
	return nil
}
