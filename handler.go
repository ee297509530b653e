// Package customauth is a Caddy HTTP handler that identifies chat-widget visitors
// ("Custom Authentication"): it resolves the bot, checks the browser's origin against
// the bot's domain whitelist, asks the customer's identity API who the visitor's access
// token belongs to, and hands the verified contact to the chat backend as headers, a
// signed assertion and placeholders. Whenever that is not possible the request passes
// through unmodified (except for the removal of spoofed contact headers) and the
// backend asks the visitor instead.
package customauth

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/custom-auth/custom_auth/contact"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// Handler identifies chat-widget visitors through the customer's identity API.
//
// Every value may use placeholders: request placeholders such as
// `{http.request.header.X-Bot-Id}` are evaluated per request, global ones such as
// `{env.CA_TOKEN}` once when the config is loaded.
type Handler struct {
	// Where the bot id comes from. Default: `{http.request.header.X-Bot-Id}`.
	BotID string `json:"bot_id,omitempty"`

	// Where the visitor's access token comes from.
	// Default: `{http.request.header.X-Access-Token}`.
	Token string `json:"token,omitempty"`

	// Where the browser's origin comes from. Default (empty): the `Origin` header when
	// present (even `null`), otherwise the origin of the `Referer` header.
	Origin string `json:"origin,omitempty"`

	// Visitor-supplied fields, by name, and where each comes from. These are the
	// fields a bot may `forward` to its identity API and that the primary-key check
	// compares. The defaults are always present unless overridden:
	// `user_id` `{http.request.header.X-User-Id}`,
	// `email` `{http.request.header.X-User-Email}`,
	// `phone_number` `{http.request.header.X-User-Phone}`.
	Fields map[string]string `json:"fields,omitempty"`

	// Prefix of the contact headers given to the backend, and of the headers removed
	// from every incoming request. Default: `X-Contact-`.
	HeaderPrefix string `json:"header_prefix,omitempty"`

	// HS256 key (at least 32 bytes) that signs the `<prefix>Assertion` JWT.
	// Default: none, no assertion.
	SignKey string `json:"sign_key,omitempty"`

	// PEM files with Ed25519 or ECDSA P-256 private keys that sign the assertion
	// (EdDSA or ES256) instead of `sign_key`. The first key signs; the public keys of
	// all are published at `jwks_path`, so a key can be rotated by adding the new one
	// first and removing the old one later. Default: none.
	SignKeyFiles []string `json:"sign_key_files,omitempty"`

	// Request path at which this handler answers with the JWKS (public keys) of
	// `sign_key_files`, e.g. `/.well-known/custom-auth/jwks.json`. Default: none.
	JWKSPath string `json:"jwks_path,omitempty"`

	// Lifetime of an assertion. Default: 60s.
	AssertionTTL caddy.Duration `json:"assertion_ttl,omitempty"`

	// Memory bound, in bytes, of all caches of this handler together.
	// Default: 64MB.
	CacheSize int64 `json:"cache_size,omitempty"`

	// What a failed identification does: `fallback` passes the request on without
	// contact headers; `reject` answers 401 instead (never for `unknown_bot`,
	// `disabled` or `preflight`). Default: `fallback`.
	OnFail string `json:"on_fail,omitempty"`

	// Where settings of bots that are not listed in `bots` come from.
	// Default: none, such bots are unknown.
	BotsURL *BotsSource `json:"bots_url,omitempty"`

	// Settings by bot id; the id `*` applies to every bot not listed.
	Bots map[string]*Bot `json:"bots,omitempty"`

	botID, token, origin valueSource
	fields               []visitorField
	prefix               string
	headerNames          contactHeaderNames
	reject               bool
	bots                 map[string]*botSettings
	defaultBot           *botSettings
	remoteBots           *remoteBots
	identities           identifier
	caches               *caches
	assertions           *assertionSigner
	env                  *environment
	metrics              *metrics         // the process's collectors; tests give a handler its own
	now                  func() time.Time // the clock; tests replace it
	logger               *zap.Logger      // instead of Caddy's; the CLI's is quiet
}

// environment is what bots, whitelists and API clients share within one config.
type environment struct {
	// ctx is the config's context, cancelled when the config is unloaded; background
	// work uses it.
	ctx     context.Context
	client  *http.Client
	metrics *metrics
	caches  *caches // the handler's cache; fetched whitelists live there too
	logger  *zap.Logger
	now     func() time.Time

	warnedMu sync.Mutex
	warned   map[string]time.Time // when each key was last warned about
	// The warning budget: lines logged in the current window, and lines held back
	// since the last one logged.
	warnWindow   time.Time
	warnsLogged  int
	warnsDropped int
}

const (
	// warnInterval is the least time between two warnings about the same thing.
	warnInterval = time.Minute
	// maxWarnings is how many warning lines a handler writes per warnInterval. Keys
	// come from bot ids, which visitors choose, so the per-key limit alone does not
	// bound the log: a flood of made-up ids while bots_url is down would write one
	// line per id.
	maxWarnings = 100
	// maxWarnedKeys bounds the memory of which keys were warned about.
	maxWarnedKeys = 10000
)

// warn logs a warning about a failing API, at most once per warnInterval per key and
// at most maxWarnings times per warnInterval in all, so that an API that is down, or
// a flood of bot ids, does not flood the log. The first line after some were held
// back by the overall limit says how many, as `dropped`.
func (e *environment) warn(key, msg string, fields ...zap.Field) {
	now := e.now()
	e.warnedMu.Lock()
	if last, seen := e.warned[key]; seen && now.Sub(last) < warnInterval {
		e.warnedMu.Unlock()
		return
	}
	if len(e.warned) >= maxWarnedKeys {
		clear(e.warned)
	}
	e.warned[key] = now
	if now.Sub(e.warnWindow) >= warnInterval {
		e.warnWindow, e.warnsLogged = now, 0
	}
	if e.warnsLogged >= maxWarnings {
		e.warnsDropped++
		e.warnedMu.Unlock()
		return
	}
	e.warnsLogged++
	dropped := e.warnsDropped
	e.warnsDropped = 0
	e.warnedMu.Unlock()

	if dropped > 0 {
		fields = append(fields[:len(fields):len(fields)], zap.Int("dropped", dropped))
	}
	e.logger.Warn(msg, fields...)
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.custom_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Defaults of the handler's values.
const (
	defaultBotID        = "{http.request.header.X-Bot-Id}"
	defaultToken        = "{http.request.header.X-Access-Token}"
	defaultCacheSize    = 64 << 20
	defaultAssertionTTL = 60 * time.Second
)

var defaultFields = map[string]string{
	"user_id":      "{http.request.header.X-User-Id}",
	"email":        "{http.request.header.X-User-Email}",
	"phone_number": "{http.request.header.X-User-Phone}",
}

// Provision sets up the handler.
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.now == nil {
		h.now = time.Now
	}
	if h.logger == nil {
		h.logger = ctx.Logger()
	}
	h.env = &environment{ctx: ctx, logger: h.logger, now: h.now, client: newAPIClient(), warned: map[string]time.Time{}}
	repl := caddy.NewReplacer()

	h.botID = compileValue(cmp.Or(h.BotID, defaultBotID), repl)
	h.token = compileValue(cmp.Or(h.Token, defaultToken), repl)
	if h.Origin != "" {
		h.origin = compileValue(h.Origin, repl)
	}
	fields := make(map[string]string, len(defaultFields)+len(h.Fields))
	for name, src := range defaultFields {
		fields[name] = src
	}
	for name, src := range h.Fields {
		fields[name] = src
	}
	h.fields = compileFields(fields, repl)

	h.prefix = cmp.Or(h.HeaderPrefix, contact.DefaultPrefix)
	if err := checkHeaderPrefix(h.prefix); err != nil {
		return err
	}
	h.headerNames = newContactHeaderNames(h.prefix)
	switch h.OnFail {
	case "", "fallback":
	case "reject":
		h.reject = true
	default:
		return fmt.Errorf("on_fail: must be fallback or reject, not %q", h.OnFail)
	}
	if h.CacheSize < 0 {
		return fmt.Errorf("cache_size: must not be negative")
	}

	var err error
	if h.assertions, err = newAssertionSigner(h, repl); err != nil {
		return err
	}
	if h.metrics == nil {
		if h.metrics, err = newMetrics(ctx.GetMetricsRegistry()); err != nil {
			return err
		}
	}
	h.env.metrics = h.metrics
	if h.caches, err = loadCaches(cmp.Or(h.CacheSize, defaultCacheSize), h.env.logger); err != nil {
		return err
	}
	h.env.caches = h.caches

	knownFields := h.fieldNames()
	h.bots = make(map[string]*botSettings, len(h.Bots))
	for id, cfg := range h.Bots {
		if cfg == nil {
			return fmt.Errorf("bot %q: no settings", id)
		}
		h.env.metrics.bots.nameListed(id) // the operator's bots keep their metric label
		b, err := newBot(id, cfg, knownFields, repl, h.env)
		if err != nil {
			return fmt.Errorf("bot %q: %w", id, err)
		}
		if id == "*" {
			h.defaultBot = b
		} else {
			h.bots[id] = b
		}
	}
	if h.BotsURL != nil {
		if h.remoteBots, err = newRemoteBots(h.BotsURL, knownFields, h.env, h.caches, repl); err != nil {
			return fmt.Errorf("bots_url: %w", err)
		}
	}

	h.identities = h.cachedIdentities(&identityClient{client: h.env.client, metrics: h.env.metrics})
	return nil
}

// Validate checks what needs no provisioning. Most checks are in Provision, after the
// placeholders in the values are expanded; a JSON config gets the same errors as a
// Caddyfile there.
func (h *Handler) Validate() error {
	if h.JWKSPath != "" && !strings.HasPrefix(h.JWKSPath, "/") {
		return fmt.Errorf("jwks_path: must start with /")
	}
	return nil
}

// Cleanup releases this config's share of the caches. Background work stops with the
// config's context. It copes with a handler whose Provision failed half-way.
func (h *Handler) Cleanup() error {
	if h.env != nil {
		h.env.client.CloseIdleConnections()
	}
	if h.caches != nil {
		caches := h.caches
		h.caches = nil
		return caches.release()
	}
	return nil
}

// ServeHTTP follows the four steps of Custom Authentication. Whatever happens, the
// contact headers a client sent are removed first; the outcome is then published as
// placeholders, and the request goes on unless the operator asked for a 401.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	contact.StripHeaders(r.Header, h.prefix)

	if h.JWKSPath != "" && r.URL.Path == h.JWKSPath {
		return h.assertions.serveJWKS(w, r)
	}

	var out outcome
	if isPreflight(r) {
		// A browser's preflight carries no credentials: recognised before step 1.
		out.reason = reasonPreflight
	} else {
		out = h.identify(r.Context(), h.visitOf(r, repl), nil)
	}
	publishOutcome(repl, out)
	h.env.metrics.observeRequest(&out)
	h.logDecision(&out)

	if out.status == statusVerified {
		if err := h.injectContact(r, &out); err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
	} else if h.reject && out.reason.rejectable() {
		return caddyhttp.Error(http.StatusUnauthorized, fmt.Errorf("custom authentication failed: %s", out.reason))
	}
	return next.ServeHTTP(w, r)
}

// visit is what a request says about the visitor.
type visit struct {
	botID, origin, token string
	fields               fieldValues
}

func (h *Handler) visitOf(r *http.Request, repl *caddy.Replacer) visit {
	return visit{
		botID:  h.botID.value(r, repl),
		origin: h.requestOrigin(r, repl),
		token:  h.token.value(r, repl),
		fields: h.visitorFields(r, repl),
	}
}

// tracer is told how each step went; the CLI prints it.
type tracer interface {
	step(name string, passed bool, detail string)
}

// identify runs steps 1–3 of the flow and returns the outcome. trace may be nil; the
// details for it are only put together when it is not.
func (h *Handler) identify(ctx context.Context, v visit, trace tracer) outcome {
	out := outcome{botID: v.botID}

	// Step 1: the bot.
	b, reason := h.lookupBot(ctx, v.botID)
	if b == nil {
		if trace != nil {
			trace.step("bot", false, string(reason))
		}
		return out.fallback(reason)
	}
	out.bot = b
	if b.off {
		if trace != nil {
			trace.step("bot", false, "off")
		}
		return out.fallback(reasonDisabled)
	}
	if trace != nil {
		trace.step("bot", true, "identity API "+b.authURL)
	}

	// Step 2: the domain whitelist.
	if b.hasWhitelist() && !b.allowsOrigin(ctx, v.origin) {
		if trace != nil {
			trace.step("whitelist", false, fmt.Sprintf("origin %q is not on the whitelist", v.origin))
		}
		return out.fallback(reasonDomainNotAllowed)
	}
	if trace != nil {
		trace.step("whitelist", true, whitelistDetail(b, v.origin))
	}

	// Step 3: the identity API.
	if v.token == "" {
		if trace != nil {
			trace.step("identity", false, "no access token")
		}
		return out.fallback(reasonMissingToken)
	}
	res := h.identities.identify(ctx, b, identityRequest{token: v.token, fields: v.fields})
	out.cacheHit, out.apiTime, out.apiStatus = res.cacheHit, res.apiTime, res.status
	switch res.result {
	case resultRejected:
		if trace != nil {
			trace.step("identity", false, fmt.Sprintf("rejected (HTTP %d)", res.status))
		}
		return out.fallback(reasonRejected)
	case resultError:
		out.err = res.err
		if ctx.Err() == nil { // a visitor who left is no news about the API
			h.env.warn("identity:"+b.id, "identity API failed; visitors of this bot fall back to anonymous",
				zap.String("bot", b.id), zap.Error(res.err))
		}
		if trace != nil {
			trace.step("identity", false, res.err.Error())
		}
		return out.fallback(reasonError)
	}
	if claimed, ok := v.fields.get(b.primaryField); ok && !b.samePrimary(claimed, res.identity.primary) {
		if trace != nil {
			trace.step("identity", false, fmt.Sprintf("the API says %s %q, the visitor claimed %q", b.identifyBy, res.identity.primary, claimed))
		}
		return out.fallback(reasonIdentityMismatch)
	}
	if trace != nil {
		trace.step("identity", true, fmt.Sprintf("%s %q (HTTP %d)", b.identifyBy, res.identity.primary, res.status))
	}

	// Step 4: verified.
	out.status = statusVerified
	out.identity = res.identity
	return out
}

func whitelistDetail(b *botSettings, origin string) string {
	if !b.hasWhitelist() {
		return "no whitelist: any origin"
	}
	return fmt.Sprintf("origin %q is allowed", origin)
}

// lookupBot finds the settings of a bot: listed, fetched from bots_url, or `bot *`.
func (h *Handler) lookupBot(ctx context.Context, id string) (*botSettings, reason) {
	if b, ok := h.bots[id]; ok {
		return b, ""
	}
	if h.remoteBots != nil {
		b, reason := h.remoteBots.lookup(ctx, id)
		if b != nil || reason != reasonUnknownBot {
			return b, reason
		}
	}
	if h.defaultBot != nil {
		return h.defaultBot, ""
	}
	return nil, reasonUnknownBot
}

// requestOrigin is the browser's origin: the configured placeholder, else the Origin
// header when present (authoritative even when it is `null`), else Referer's origin.
func (h *Handler) requestOrigin(r *http.Request, repl *caddy.Replacer) string {
	if !h.origin.isZero() {
		return h.origin.value(r, repl)
	}
	if v, ok := r.Header["Origin"]; ok {
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	return r.Header.Get("Referer")
}

func (h *Handler) logDecision(out *outcome) {
	if ce := h.env.logger.Check(zap.DebugLevel, "custom authentication"); ce != nil {
		fields := []zap.Field{
			zap.String("bot", out.botID),
			zap.String("status", out.status.String()),
			zap.String("reason", string(out.reason)),
			zap.Bool("cache_hit", out.cacheHit),
		}
		if out.apiTime > 0 {
			fields = append(fields, zap.Duration("api_latency", out.apiTime))
		}
		if out.err != nil {
			fields = append(fields, zap.Error(out.err))
		}
		ce.Write(fields...)
	}
}

func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
