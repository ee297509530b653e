package customauth

import (
	"fmt"
	"net/http"

	"github.com/custom-auth/custom_auth/contact"
)

// stripContactHeaders removes every header that could be mistaken for one the gateway
// sets: those whose name starts with the prefix when compared case-insensitively with
// `_` and `.` read as `-`. Caddy drops such aliases by default, but an operator may let
// them through, and some backends' frameworks fold them into the real name.
func stripContactHeaders(h http.Header, prefix string) {
	for name := range h {
		if hasHeaderPrefix(name, prefix) {
			delete(h, name)
		}
	}
}

// hasHeaderPrefix compares without allocating; it runs for every header of every
// request.
func hasHeaderPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if foldHeaderByte(name[i]) != foldHeaderByte(prefix[i]) {
			return false
		}
	}
	return true
}

func foldHeaderByte(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// checkHeaderPrefix accepts a prefix that is the start of a valid header name.
func checkHeaderPrefix(prefix string) error {
	if !validHeaderName(prefix) {
		return fmt.Errorf("header_prefix: %q is not the start of a valid header name", prefix)
	}
	return nil
}

// injectContact sets the contact headers of a verified visitor, and the signed
// assertion when a key is configured.
func (h *Handler) injectContact(header http.Header, out *outcome) error {
	id := out.identity
	contact.SetHeaders(header, h.prefix, id.data, out.bot.identifyBy)
	if h.assertions == nil {
		return nil
	}
	token, err := h.assertions.sign(out.botID, id.primary, out.bot.identifyBy, id.raw, h.now())
	if err != nil {
		return fmt.Errorf("signing the contact assertion: %w", err)
	}
	header.Set(contact.HeaderName(h.prefix, "assertion"), token)
	return nil
}
