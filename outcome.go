package customauth

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/custom-auth/custom_auth/contact"
)

// status is the outcome of Custom Authentication for one request.
type status uint8

const (
	statusFallback status = iota
	statusVerified
)

func (s status) String() string {
	if s == statusVerified {
		return "verified"
	}
	return "fallback"
}

// reason says why a request fell back. The values are part of the product contract.
type reason string

const (
	reasonPreflight        reason = "preflight"
	reasonUnknownBot       reason = "unknown_bot"
	reasonDisabled         reason = "disabled"
	reasonDomainNotAllowed reason = "domain_not_allowed"
	reasonMissingToken     reason = "missing_token"
	reasonRejected         reason = "rejected"
	reasonError            reason = "error"
	reasonIdentityMismatch reason = "identity_mismatch"
)

// rejectable reports whether `on_fail reject` answers 401 for this reason. Unknown and
// disabled bots are not using Custom Authentication at all, and a preflight carries no
// credentials, so those always pass on.
func (r reason) rejectable() bool {
	switch r {
	case reasonUnknownBot, reasonDisabled, reasonPreflight:
		return false
	}
	return true
}

// outcome is everything the handler learned about one request.
type outcome struct {
	status    status
	reason    reason
	botID     string
	bot       *bot
	identity  *identity
	cacheHit  bool
	apiTime   time.Duration
	apiStatus int
	err       error
}

func (o outcome) fallback(r reason) outcome {
	o.status = statusFallback
	o.reason = r
	return o
}

// Placeholders published for other handlers and logs.
const (
	placeholderPrefix   = "http.custom_auth."
	placeholderContact  = placeholderPrefix + "contact."
	placeholderMetadata = placeholderContact + "metadata."
)

// publishOutcome makes the outcome available as `{http.custom_auth.*}` placeholders.
// They are answered lazily, so a request whose placeholders nobody reads pays for
// none of them; the outcome is captured by value, in the closure's one allocation.
func publishOutcome(repl *caddy.Replacer, out outcome) {
	repl.Map(func(key string) (any, bool) {
		if !strings.HasPrefix(key, placeholderPrefix) {
			return nil, false
		}
		switch key[len(placeholderPrefix):] {
		case "status":
			return out.status.String(), true
		case "reason":
			return string(out.reason), true
		case "bot_id":
			return out.botID, true
		}
		if out.identity == nil {
			return nil, false
		}
		if field, ok := strings.CutPrefix(key, placeholderMetadata); ok {
			return jsonObject(out.identity.fields()["metadata"]).Text(field)
		}
		if field, ok := strings.CutPrefix(key, placeholderContact); ok {
			return out.identity.fields().Text(field)
		}
		return nil, false
	})
}

// identity is a contact verified by the identity API. It is what the cache holds, so
// it keeps the data object once, as raw JSON, and the header values ready to send;
// placeholders, read far less often, parse the JSON when they are asked.
type identity struct {
	// raw is the data object exactly as the API sent it (compacted).
	raw []byte
	// primary is the value of the bot's identify_by field, as text.
	primary string
	// headers are the contact's header values, encoded once for every request that
	// the cached identity serves.
	headers []contactHeader
}

// contactHeader is one encoded header value; field indexes contact.Fields.
type contactHeader struct {
	field int
	value string
}

func newIdentity(data contact.Data, raw []byte, primary string) *identity {
	id := &identity{raw: raw, primary: primary}
	for i, field := range contact.Fields {
		if text, ok := data.Text(field); ok {
			id.headers = append(id.headers, contactHeader{field: i, value: contact.EncodeValue(text)})
		}
	}
	return id
}

// fields parses the data object, field by field.
func (id *identity) fields() contact.Data {
	var data contact.Data
	_ = json.Unmarshal(id.raw, &data) // valid: parseAnswer parsed it before
	return data
}

// jsonObject returns a JSON object field by field; nil when raw is not an object.
func jsonObject(raw json.RawMessage) contact.Data {
	var obj contact.Data
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	return obj
}
