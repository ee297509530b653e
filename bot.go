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
	"net/url"
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

// WhitelistSource is an API that answers a bot's domain whitelist.
type WhitelistSource struct {
	// The API's absolute http or https URL, asked with GET.
	URL string `json:"url,omitempty"`

	// Headers sent with the request. Default: none.
	Headers map[string]string `json:"headers,omitempty"`

	// How often the list is fetched again. Default: 5m.
	Refresh caddy.Duration `json:"refresh,omitempty"`
}

// BreakerSettings tunes the circuit breaker in front of a bot's identity API.
type BreakerSettings struct {
	// Consecutive errors (connection error, timeout, 5xx) that open the breaker.
	// Default: 5.
	Failures int `json:"failures,omitempty"`

	// How long the breaker stays open before one probe call is let through.
	// Default: 10s.
	OpenFor caddy.Duration `json:"open_for,omitempty"`
}

// Defaults of a bot's settings.
const (
	defaultTimeout         = 3 * time.Second
	defaultCacheTTL        = 5 * time.Minute
	defaultNegativeTTL     = 30 * time.Second
	defaultWhitelistTTL    = 5 * time.Minute
	defaultBreakerFailures = 5
	defaultBreakerOpenFor  = 10 * time.Second
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

// expandConfigured expands global placeholders in a configured value. A value that is
// written but expands to nothing, such as an unset {env.X}, is an error: a secret or a
// URL that silently disappears is never accepted.
func expandConfigured(option, raw string, expand func(string) string) (string, error) {
	v := expand(raw)
	if raw != "" && strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%s: %q expands to an empty value", option, raw)
	}
	return v, nil
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

// botPolicy is what a bot's settings may do, which depends on who wrote them: the
// operator, for bots listed in the config, or a tenant of the chat product, for bots
// from bots_url (newTenantPolicy).
type botPolicy struct {
	// expand expands global placeholders such as {env.X}.
	expand func(string) string
	// client makes the bot's API calls.
	client *http.Client
	// maxTimeout caps the bot's timeout; 0: no cap.
	maxTimeout time.Duration
	// callsInFlight bounds the bot's identity calls in flight; 0: no bound.
	callsInFlight int
	// breakers keeps listed bots' breakers across reloads; nil: each bot gets a new
	// one, which lives as long as its settings.
	breakers *listedBreakers
	// tenant marks the settings of a remote bot, written by a tenant, and
	// allowPrivate a tenant's client that may reach private addresses.
	tenant, allowPrivate bool
	// background is the context of the bot's background work (whitelist and JWKS
	// refreshes): a remote bot's own, which its eviction ends; nil: the config's.
	background context.Context
}

// fetchScope tells apart what is fetched with different clients, for the cache keys
// of fetched values: a list a tenant's bot fetched is not served to the operator's
// bot of the same id, nor one fetched from a private address to a config that
// refuses them.
func (p *botPolicy) fetchScope() string {
	switch {
	case !p.tenant:
		return "operator"
	case p.allowPrivate:
		return "tenant, private addresses allowed"
	}
	return "tenant"
}

// backgroundOf is the context of a bot's background work.
func (p *botPolicy) backgroundOf(env *environment) context.Context {
	if p.background != nil {
		return p.background
	}
	return env.ctx
}

// operatorPolicy is what bots listed in the config may do: anything the operator
// wrote, with the environment's placeholders expanded.
func operatorPolicy(repl *caddy.Replacer, client *http.Client, breakers *listedBreakers) *botPolicy {
	return &botPolicy{
		expand:   func(s string) string { return repl.ReplaceKnown(s, "") },
		client:   client,
		breakers: breakers,
	}
}

// breakerFor returns the circuit breaker of a bot's identity API.
func (p *botPolicy) breakerFor(botID, url string, tuning breakerTuning, m *metrics) *breaker {
	if p.breakers == nil {
		return newBreaker(botID, tuning, m)
	}
	return p.breakers.load(botID, url, tuning, m)
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
	if err := b.prepareIdentitySource(cfg, policy, env); err != nil {
		return nil, err
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
	if err := b.prepareWhitelists(cfg, policy, env); err != nil {
		return nil, err
	}

	tuning, err := breakerTuningOf(cfg.CircuitBreaker)
	if err != nil {
		return nil, fmt.Errorf("circuit_breaker: %w", err)
	}
	b.client = policy.client
	b.breaker = policy.breakerFor(id, b.authURL, tuning, env.metrics)
	b.callSlots = newCallSlots(policy.callsInFlight)

	b.settingsKey = settingsKey(b)
	b.verifiedRequests = env.metrics.verifiedCounter(id)
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

// prepareWhitelists compiles the bot's manual whitelist, with placeholders expanded,
// and prepares the fetching of its whitelist_url.
func (b *botSettings) prepareWhitelists(cfg *Bot, policy *botPolicy, env *environment) error {
	var err error
	if len(cfg.Whitelist) > 0 {
		entries := make([]string, len(cfg.Whitelist))
		for i, e := range cfg.Whitelist {
			entries[i] = policy.expand(e)
		}
		if b.whitelist, err = compileWhitelist(entries); err != nil {
			return fmt.Errorf("whitelist: %w", err)
		}
	}
	if cfg.WhitelistURL != nil {
		if b.remoteList, err = newRemoteWhitelist(b.id, cfg.WhitelistURL, b.timeout, policy.expand, policy, env); err != nil {
			return fmt.Errorf("whitelist_url: %w", err)
		}
	}
	return nil
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

// samePrimary compares the visitor's claimed primary key with the API's.
func (b *botSettings) samePrimary(claimed, verified string) bool {
	if b.identifyBy == "email" {
		return strings.EqualFold(claimed, verified)
	}
	return claimed == verified
}

// checkURL accepts absolute http and https URLs with a host. Its errors show the URL
// redacted: it may carry credentials.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL: %v", redactURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must be an absolute http or https URL", redactURL(raw))
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host", redactURL(raw))
	}
	return nil
}

// durationOrDefault checks a duration that must not be negative; zero means the default.
func durationOrDefault(name string, d caddy.Duration, def time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("%s: must not be negative", name)
	case d == 0:
		return def, nil
	}
	return time.Duration(d), nil
}

// optionalDuration checks a duration that may be zero (off); absent means the default.
func optionalDuration(name string, d *caddy.Duration, def time.Duration) (time.Duration, error) {
	switch {
	case d == nil:
		return def, nil
	case *d < 0:
		return 0, fmt.Errorf("%s: must not be negative", name)
	}
	return time.Duration(*d), nil
}
