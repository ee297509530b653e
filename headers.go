package customauth

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/custom-auth/custom_auth/contact"
	"golang.org/x/net/http/httpguts"
)

// checkHeaderPrefix accepts a prefix that is the start of a valid header name.
func checkHeaderPrefix(prefix string) error {
	if !httpguts.ValidHeaderFieldName(prefix) {
		return fmt.Errorf("header_prefix: %q is not the start of a valid header name", prefix)
	}
	return nil
}

// contactHeaderNames are the names of the headers the handler sets, in canonical form
// so that they can be set without canonicalising them on every request.
type contactHeaderNames struct {
	fields     []string // by index of contact.Fields
	identifyBy string
	assertion  string
}

func newContactHeaderNames(prefix string) contactHeaderNames {
	name := func(field string) string {
		return textproto.CanonicalMIMEHeaderKey(contact.HeaderName(prefix, field))
	}
	names := contactHeaderNames{identifyBy: name("identify_by"), assertion: name("assertion")}
	for _, field := range contact.Fields {
		names.fields = append(names.fields, name(field))
	}
	return names
}

// injectContact sets the contact headers of a verified visitor, and the signed
// assertion when a key is configured. The values were encoded when the identity was
// verified, and all of a request's header values share one allocation.
func (h *Handler) injectContact(r *http.Request, out *outcome) error {
	id := out.identity
	n := len(id.headers)
	header := r.Header
	values := make([]string, n+2)
	for i, ch := range id.headers {
		values[i] = ch.value
		header[h.headerNames.fields[ch.field]] = values[i : i+1 : i+1]
	}
	values[n] = contact.EncodeValue(out.bot.identifyBy)
	header[h.headerNames.identifyBy] = values[n : n+1 : n+1]
	if h.assertions == nil {
		return nil
	}
	token, err := h.assertions.sign(out.botID, id.primary, out.bot.identifyBy, id.raw, h.now())
	if err != nil {
		return fmt.Errorf("signing the contact assertion: %w", err)
	}
	values[n+1] = token
	header[h.headerNames.assertion] = values[n+1 : n+2 : n+2]
	return nil
}

// headerValues checks configured request headers and expands their values.
func headerValues(in map[string]string, expand func(string) string) (http.Header, error) {
	out := make(http.Header, len(in))
	for name, value := range in {
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("invalid header name %q", name)
		}
		value = expand(value)
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("header %s: value has a line break or NUL", name)
		}
		out.Set(name, value)
	}
	return out, nil
}
