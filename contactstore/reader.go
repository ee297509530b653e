package contactstore

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

// Reader reads the verified contact of a request, as the gateway sent it.
type Reader struct {
	// Verifier checks the assertion (X-Contact-Assertion). With a verifier, only a
	// valid assertion for the request's bot identifies a visitor and Seen.At is its
	// iat. Without one, the X-Contact-* headers are read as they are, which is right
	// only when nothing but the gateway can reach the backend, and Seen.At is now.
	Verifier *contact.Verifier
	// Prefix is the gateway's header prefix. Default: contact.DefaultPrefix.
	Prefix string
	// BotID tells which bot a request is for. Default: the X-Bot-Id header.
	BotID func(*http.Request) string
	// Now is the clock for Seen.At without a verifier. Default: time.Now.
	Now func() time.Time
}

// Read returns the contact the gateway verified for the request. It returns an error
// wrapping contact.ErrNoContact for an anonymous visitor (no assertion, or no contact
// headers), and one of the contact package's errors for an assertion it refuses: the
// visitor is then anonymous too.
func (rd *Reader) Read(r *http.Request) (Seen, error) {
	prefix := rd.Prefix
	if prefix == "" {
		prefix = contact.DefaultPrefix
	}
	bot := r.Header.Get("X-Bot-Id")
	if rd.BotID != nil {
		bot = rd.BotID(r)
	}
	if bot == "" {
		return Seen{}, fmt.Errorf("%w: the request names no bot", contact.ErrNoContact)
	}
	if rd.Verifier == nil {
		c, err := contact.FromHeaders(r.Header, prefix)
		if err != nil {
			return Seen{}, err
		}
		now := time.Now
		if rd.Now != nil {
			now = rd.Now
		}
		return Seen{Bot: bot, Contact: c, At: now()}, nil
	}
	token := r.Header.Get(contact.AssertionHeader(prefix))
	if token == "" {
		return Seen{}, fmt.Errorf("%w: no assertion", contact.ErrNoContact)
	}
	claims, err := rd.Verifier.Verify(token, bot)
	if err != nil {
		return Seen{}, err
	}
	c, err := claims.Contact()
	if err != nil {
		return Seen{}, err
	}
	if claims.IssuedAt == nil {
		return Seen{}, errors.New("contactstore: the assertion has no iat")
	}
	return Seen{Bot: bot, Contact: c, At: claims.IssuedAt.Time}, nil
}
