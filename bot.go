package customauth

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Bot is the Custom Authentication settings of one bot. The same JSON form is what
// `bots_url` answers for a bot.
type Bot struct {
	// Disables Custom Authentication for this bot: its requests pass on with the
	// reason `disabled`. Default: false.
	Off bool `json:"off,omitempty"`

	// The customer's identity API, an absolute http or https URL. Required unless off
	// or `verify_jwt` is set.
	AuthURL string `json:"auth_url,omitempty"`

	// Headers sent to the identity API, e.g. `Authorization: Bearer {env.CA_TOKEN}`.
	// Default: none.
	AuthHeaders map[string]string `json:"auth_headers,omitempty"`

	// Visitor-supplied fields sent to the identity API along with the access token,
	// when the visitor supplied them. Default: none.
	Forward []string `json:"forward,omitempty"`

	// Verifies the access token locally, as a JWT the customer signed, instead of
	// calling an identity API: no `auth_url`, `auth_headers` or `forward` then.
	// Default: none.
	VerifyJWT *JWTSettings `json:"verify_jwt,omitempty"`

	// The primary key that the API's answer must carry and that must equal the
	// visitor's claim when the visitor made one: `id` (checked against the visitor's
	// `user_id`), `email` or `phone_number`. Default: `id`.
	IdentifyBy string `json:"identify_by,omitempty"`

	// Time limit of the whole identity API call, and of a `verify_jwt` JWKS fetch.
	// Default: 3s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How long a verified identity is cached; 0 disables the cache. Default: 5m.
	CacheTTL *caddy.Duration `json:"cache_ttl,omitempty"`

	// How long a rejection is cached; 0 disables it. Default: 30s.
	NegativeTTL *caddy.Duration `json:"negative_ttl,omitempty"`

	// Domains the widget may be embedded on: `example.com`, `*.example.com` (any
	// subdomain, not the apex), optionally with scheme and port. Setting it turns the
	// whitelist on. Default: none.
	Whitelist []string `json:"whitelist,omitempty"`

	// A whitelist fetched from the customer's API and refreshed in the background;
	// together with `whitelist` when both are set. Default: none.
	WhitelistURL *WhitelistSource `json:"whitelist_url,omitempty"`

	// When calls to the identity API are skipped after repeated errors.
	// Default: after 5 consecutive errors, for 10s.
	CircuitBreaker *BreakerSettings `json:"circuit_breaker,omitempty"`
}

// Defaults of a bot's settings.
const (
	defaultTimeout     = 3 * time.Second
	defaultCacheTTL    = 5 * time.Minute
	defaultNegativeTTL = 30 * time.Second
)

// identifyByField maps identify_by to the visitor-supplied field it is checked against.
var identifyByField = map[string]string{
	"id":           "user_id",
	"email":        "email",
	"phone_number": "phone_number",
}

// primaryFieldOf checks identify_by and returns the visitor-supplied field it is
// checked against.
func primaryFieldOf(identifyBy string) (string, error) {
	field, ok := identifyByField[identifyBy]
	if !ok {
		return "", fmt.Errorf("identify_by: must be id, email or phone_number, not %q", identifyBy)
	}
	return field, nil
}

// checkIdentitySource requires one way to verify tokens unless the bot is off: an
// identity API, or verify_jwt.
func (cfg *Bot) checkIdentitySource(botID string) error {
	switch {
	case cfg.Off:
		return nil
	case cfg.VerifyJWT == nil && cfg.AuthURL == "":
		return errors.New("auth_url is required unless the bot is off or has verify_jwt")
	case cfg.VerifyJWT == nil:
		return nil
	case cfg.AuthURL != "":
		return errors.New("verify_jwt: a bot has auth_url or verify_jwt, not both")
	case len(cfg.AuthHeaders) > 0:
		return errors.New("auth_header: only for auth_url; verify_jwt calls no API")
	case len(cfg.Forward) > 0:
		return errors.New("forward: only for auth_url; verify_jwt calls no API")
	}
	return cfg.VerifyJWT.check(botID)
}

// botSettings is a bot's settings, checked and ready for requests.
type botSettings struct {
	id           string
	off          bool
	authURL      string
	authHeaders  http.Header
	forward      map[string]bool
	identifyBy   string
	primaryField string
	timeout      time.Duration
	cacheTTL     time.Duration
	negativeTTL  time.Duration
	whitelist    *whitelist
	remoteList   *remoteWhitelist
	// jwt verifies the bot's tokens locally, when it has verify_jwt; nil: the
	// identity API does.
	jwt *jwtVerifier
	// client makes the bot's calls: the operator's, or the tenants' (botPolicy).
	client    *http.Client
	breaker   *breaker
	callSlots callSlots
	// verifiedRequests counts this bot's verified requests.
	verifiedRequests prometheus.Counter
	// settingsKey identifies the settings that shape an identity (URL, headers,
	// forwarded fields, primary key, verify_jwt), so a cached identity is never
	// served to a bot whose settings changed.
	settingsKey [sha256.Size]byte
}

// newBot checks a bot's settings and prepares them as policy allows.
func newBot(id string, cfg *Bot, knownFields map[string]bool, policy *botPolicy, env *environment) (*botSettings, error) {
	b := &botSettings{id: id, off: cfg.Off}
	if cfg.Off {
		return b, nil
	}

	if err := cfg.checkIdentitySource(id); err != nil {
		return nil, err
	}
	var err error
	if b.timeout, err = durationOrDefault("timeout", cfg.Timeout, defaultTimeout); err != nil {
		return nil, err
	}
	if policy.maxTimeout > 0 {
		b.timeout = min(b.timeout, policy.maxTimeout)
	}
	if b.forward, err = forwardedFields(cfg.Forward, knownFields); err != nil {
		return nil, err
	}
	b.identifyBy = cmp.Or(cfg.IdentifyBy, "id")
	if b.primaryField, err = primaryFieldOf(b.identifyBy); err != nil {
		return nil, err
	}
	if b.cacheTTL, err = optionalDuration("cache_ttl", cfg.CacheTTL, defaultCacheTTL); err != nil {
		return nil, err
	}
	if b.negativeTTL, err = optionalDuration("negative_ttl", cfg.NegativeTTL, defaultNegativeTTL); err != nil {
		return nil, err
	}
	tuning, err := breakerTuningOf(cfg.CircuitBreaker)
	if err != nil {
		return nil, fmt.Errorf("circuit_breaker: %w", err)
	}

	if err := b.prepareIdentitySource(cfg, policy, env); err != nil {
		return nil, err
	}
	if b.whitelist, b.remoteList, err = botWhitelists(id, cfg.Whitelist, cfg.WhitelistURL, b.timeout, policy, env); err != nil {
		return nil, err
	}
	b.verifiedRequests = env.metrics.verifiedCounter(id)
	breakerOpen := env.metrics.breakerOpenGauge(id)
	b.client = policy.client
	b.breaker = policy.breakerFor(id, b.authURL, tuning, breakerOpen)
	b.callSlots = newCallSlots(policy.callsInFlight)
	b.settingsKey = settingsKey(b)
	return b, nil
}

// prepareIdentitySource prepares what verifies the bot's tokens: its verify_jwt keys,
// or its identity API's URL and headers, with placeholders expanded.
func (b *botSettings) prepareIdentitySource(cfg *Bot, policy *botPolicy, env *environment) error {
	var err error
	if cfg.VerifyJWT != nil {
		if b.jwt, err = newJWTVerifier(b.id, cfg.VerifyJWT, b.timeout, policy, env); err != nil {
			return fmt.Errorf("verify_jwt: %w", err)
		}
		return nil
	}
	if b.authURL, err = expandConfigured("auth_url", cfg.AuthURL, policy.expand); err != nil {
		return err
	}
	if err := checkURL(b.authURL); err != nil {
		return fmt.Errorf("auth_url: %w", err)
	}
	if b.authHeaders, err = headerValues(cfg.AuthHeaders, policy.expand); err != nil {
		return fmt.Errorf("auth_header: %w", err)
	}
	return nil
}

// forwardedFields checks that a bot forwards only fields the handler knows.
func forwardedFields(forward []string, knownFields map[string]bool) (map[string]bool, error) {
	fields := make(map[string]bool, len(forward))
	for _, f := range forward {
		if !knownFields[f] {
			return nil, fmt.Errorf("forward: unknown field %q (known: %s)", f, strings.Join(slices.Sorted(maps.Keys(knownFields)), ", "))
		}
		fields[f] = true
	}
	return fields, nil
}

// settingsKey hashes the settings that shape an identity.
func settingsKey(b *botSettings) [sha256.Size]byte {
	var verifyJWT *JWTSettings
	if b.jwt != nil {
		verifyJWT = &b.jwt.settings
	}
	shape := struct {
		URL        string
		Headers    http.Header
		Forward    []string
		IdentifyBy string
		VerifyJWT  *JWTSettings `json:",omitempty"`
	}{b.authURL, b.authHeaders, slices.Sorted(maps.Keys(b.forward)), b.identifyBy, verifyJWT}
	text, _ := json.Marshal(shape) // maps are marshalled in key order
	return sha256.Sum256(text)
}

// identitySource says what verifies the bot's tokens, with no secret and no URL
// credential.
func (b *botSettings) identitySource() string {
	if b.jwt != nil {
		return b.jwt.String()
	}
	return "identity API " + redactURL(b.authURL)
}

func (b *botSettings) hasWhitelist() bool { return b.whitelist != nil || b.remoteList != nil }

// allowsOrigin reports whether the origin is on the manual or the fetched whitelist.
func (b *botSettings) allowsOrigin(ctx context.Context, origin string) bool {
	if b.whitelist != nil && b.whitelist.allows(origin) {
		return true
	}
	return b.remoteList != nil && b.remoteList.allows(ctx, origin)
}
