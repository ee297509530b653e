// Package contact reads the identity that the custom_auth gateway hands to a chat
// backend: the X-Contact-* headers and the signed X-Contact-Assertion. The gateway uses
// it too, so the header encoding and the claims exist in one place.
//
// A header value is sent verbatim when it is printable ASCII without '%' and without a
// leading or trailing space; otherwise it is percent-encoded, so a value can never split
// or forge a header and any UTF-8 survives. Always decode with [DecodeValue] (or
// decodeURIComponent, urllib.parse.unquote, url.PathUnescape).
package contact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"unicode/utf8"
)

// DefaultPrefix is the gateway's default header prefix.
const DefaultPrefix = "X-Contact-"

// Fields are the identity API's data fields that become headers, in this order.
var Fields = []string{"id", "name", "email", "phone_number", "country_code", "avatar", "label", "metadata"}

// HeaderName returns the header for a field: HeaderName("X-Contact-", "phone_number")
// is "X-Contact-Phone-Number". It also names "identify_by" and "assertion".
func HeaderName(prefix, field string) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(field))
	b.WriteString(prefix)
	upper := true
	for i := 0; i < len(field); i++ {
		c := field[i]
		switch {
		case c == '_':
			b.WriteByte('-')
			upper = true
			continue
		case upper && c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		b.WriteByte(c)
		upper = false
	}
	return b.String()
}

// EncodeValue makes a value safe for a header: verbatim when every byte is printable
// ASCII (0x20–0x7E), there is no '%', and it neither begins nor ends with a space;
// otherwise every byte but A–Z a–z 0–9 - . _ ~ becomes %XX.
func EncodeValue(s string) string {
	if isVerbatim(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(3 * len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func isVerbatim(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			return false
		}
	}
	return true
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// ErrBadEncoding reports a '%' that is not followed by two hex digits, or a value
// that is not UTF-8 once decoded: EncodeValue never produces either.
var ErrBadEncoding = errors.New("contact: invalid percent-encoding")

// DecodeValue undoes EncodeValue. A verbatim value has no '%' and comes back as is. The
// result is always valid UTF-8, so that a forged header cannot hand a backend bytes
// that no identity API sent.
func DecodeValue(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		if !utf8.ValidString(s) {
			return "", ErrBadEncoding
		}
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", ErrBadEncoding
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", ErrBadEncoding
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	if !utf8.Valid(out) {
		return "", ErrBadEncoding
	}
	return string(out), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Data is the identity API's data object, field by field, as the API sent it.
type Data map[string]json.RawMessage

// Text returns a field as text: a JSON string unquoted; a number, boolean, object or
// array as its compact JSON text. ok is false when the field is absent or null. The text
// is valid UTF-8: invalid bytes become U+FFFD, as encoding/json does for strings, since
// DecodeValue refuses anything else.
func (d Data) Text(field string) (text string, ok bool) {
	raw := bytes.TrimSpace(d[field])
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	switch raw[0] {
	case '"':
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", false
		}
		return text, true
	case '{', '[':
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return "", false
		}
		return strings.ToValidUTF8(buf.String(), "\uFFFD"), true
	}
	return string(raw), true
}

// SetHeaders sets, in h, one encoded header for each present field of Fields, and
// <prefix>Identify-By. It removes nothing: the gateway strips the client's contact
// headers before.
func SetHeaders(h http.Header, prefix string, d Data, identifyBy string) {
	for _, field := range Fields {
		if text, ok := d.Text(field); ok {
			h.Set(HeaderName(prefix, field), EncodeValue(text))
		}
	}
	h.Set(HeaderName(prefix, "identify_by"), EncodeValue(identifyBy))
}

// StripHeaders removes every header that could be mistaken for a contact header: those
// whose name starts with prefix when compared case-insensitively with '_' and '.' read
// as '-' (X_Contact_Id, x.contact.id, X-CONTACT-ID). It also removes such names from
// the Connection header, where a client would list them to have a proxy drop the
// contact headers set after the strip as hop-by-hop; the other connection options
// (keep-alive, Upgrade) stay, in order, and a Connection header left empty goes. It
// allocates only to rewrite a Connection header that lists such a name.
func StripHeaders(h http.Header, prefix string) {
	for name, values := range h {
		switch {
		case HasPrefix(name, prefix):
			delete(h, name)
		case strings.EqualFold(name, "Connection") && listsPrefixed(values, prefix):
			if kept := withoutPrefixed(values, prefix); len(kept) > 0 {
				h[name] = kept
			} else {
				delete(h, name)
			}
		}
	}
}

// listsPrefixed reports whether a Connection header lists a name with the prefix.
func listsPrefixed(values []string, prefix string) bool {
	for _, v := range values {
		for v != "" {
			var option string
			option, v, _ = strings.Cut(v, ",")
			if HasPrefix(textproto.TrimString(option), prefix) {
				return true
			}
		}
	}
	return false
}

// withoutPrefixed returns the Connection header's values without the names that have
// the prefix, each value's options joined by ", ", and without the values left empty.
// Options are split and trimmed as Caddy's reverse_proxy and net/http read them.
func withoutPrefixed(values []string, prefix string) []string {
	kept := make([]string, 0, len(values))
	for _, v := range values {
		var b strings.Builder
		for option := range strings.SplitSeq(v, ",") {
			option = textproto.TrimString(option)
			if option == "" || HasPrefix(option, prefix) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(option)
		}
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	return kept
}

// HasPrefix reports whether a header name starts with prefix, compared
// case-insensitively with '_' and '.' read as '-'. It does not allocate.
func HasPrefix(name, prefix string) bool {
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
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// Contact is a visitor verified by the customer's identity API.
type Contact struct {
	ID          string
	Name        string
	Email       string
	PhoneNumber string
	CountryCode string
	Avatar      string
	Label       string
	// Metadata is data.metadata, decoded; nil when absent.
	Metadata map[string]any
	// IdentifyBy is the primary key the gateway matched: "id", "email" or
	// "phone_number".
	IdentifyBy string
}

// ErrNoContact means the gateway did not verify the visitor: the request is anonymous.
var ErrNoContact = errors.New("contact: no verified contact")

// FromHeaders reads the contact headers that the gateway set. It returns ErrNoContact
// when <prefix>Identify-By is absent. Trust the headers only if nothing but the gateway
// can reach the backend; otherwise verify the assertion (see Verifier).
func FromHeaders(h http.Header, prefix string) (*Contact, error) {
	if h.Get(HeaderName(prefix, "identify_by")) == "" {
		return nil, ErrNoContact
	}
	text := func(field string) (string, error) {
		v, err := DecodeValue(h.Get(HeaderName(prefix, field)))
		if err != nil {
			return "", fmt.Errorf("%s: %w", HeaderName(prefix, field), err)
		}
		return v, nil
	}
	c := new(Contact)
	for _, f := range []struct {
		field string
		dst   *string
	}{
		{"id", &c.ID}, {"name", &c.Name}, {"email", &c.Email}, {"phone_number", &c.PhoneNumber},
		{"country_code", &c.CountryCode}, {"avatar", &c.Avatar}, {"label", &c.Label}, {"identify_by", &c.IdentifyBy},
	} {
		v, err := text(f.field)
		if err != nil {
			return nil, err
		}
		*f.dst = v
	}
	metadata, err := text("metadata")
	if err != nil {
		return nil, err
	}
	if metadata != "" {
		if err := json.Unmarshal([]byte(metadata), &c.Metadata); err != nil {
			return nil, fmt.Errorf("%s: %w", HeaderName(prefix, "metadata"), err)
		}
	}
	return c, nil
}

// Contact returns the typed contact of a data object.
func (d Data) Contact(identifyBy string) (*Contact, error) {
	c := &Contact{IdentifyBy: identifyBy}
	c.ID, _ = d.Text("id")
	c.Name, _ = d.Text("name")
	c.Email, _ = d.Text("email")
	c.PhoneNumber, _ = d.Text("phone_number")
	c.CountryCode, _ = d.Text("country_code")
	c.Avatar, _ = d.Text("avatar")
	c.Label, _ = d.Text("label")
	if raw, ok := d["metadata"]; ok && string(bytes.TrimSpace(raw)) != "null" {
		if err := json.Unmarshal(raw, &c.Metadata); err != nil {
			return nil, fmt.Errorf("contact: metadata: %w", err)
		}
	}
	return c, nil
}
