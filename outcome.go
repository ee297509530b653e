package customauth

import (
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
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

// step is a step of the flow.
type step uint8

const (
	stepNone step = iota // a preflight decides before the first step
	stepBot
	stepWhitelist
	stepIdentity
)

// outcome is everything the handler learned about one request.
type outcome struct {
	status    status
	reason    reason
	step      step // the step that decided
	botID     string
	bot       *botSettings
	identity  identity
	cacheHit  bool
	apiTime   time.Duration
	apiStatus int
	err       error
}

func (o outcome) fallback(at step, r reason) outcome {
	o.status = statusFallback
	o.step = at
	o.reason = r
	return o
}

// rejects reports whether on_fail reject (onFailReject) answers 401 for this outcome.
func (o *outcome) rejects(onFailReject bool) bool {
	return onFailReject && o.status != statusVerified && o.reason.rejectable()
}

// log writes the outcome to the debug log: never the token or a contact value.
func (o *outcome) log(logger *zap.Logger) {
	if ce := logger.Check(zap.DebugLevel, "custom authentication"); ce != nil {
		fields := []zap.Field{
			zap.String("bot", o.botID),
			zap.String("status", o.status.String()),
			zap.String("reason", string(o.reason)),
			zap.Bool("cache_hit", o.cacheHit),
		}
		if o.apiTime > 0 {
			fields = append(fields, zap.Duration("api_latency", o.apiTime))
		}
		// A mismatch's error quotes the API's and the visitor's primary keys: contact
		// values, which the CLI's and the admin API's test report show, a log never.
		if o.err != nil && o.reason != reasonIdentityMismatch {
			fields = append(fields, zap.Error(o.err))
		}
		ce.Write(fields...)
	}
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

// count counts the request in requests_total: a verified one on its bot's own counter.
func (o *outcome) count(m *metrics) {
	if o.status == statusVerified {
		o.bot.verifiedRequests.Inc()
		return
	}
	bot := ""
	if o.bot != nil {
		bot = o.bot.id
	}
	m.observeFallback(bot, o.status.String(), string(o.reason))
}
