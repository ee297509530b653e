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
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/custom-auth/custom_auth/contact"
)

// Handler identifies chat-widget visitors through the customer's identity API.
//
// Every value may use placeholders: request placeholders such as
// `{http.request.header.X-Bot-Id}` are evaluated per request, global ones such as
// `{env.CA_TOKEN}` once when the config is loaded.
type Handler struct {
	// Where the bot id comes from: one placeholder, or several of which the first
	// non-empty one is used. Default: `{http.request.header.X-Bot-Id}`.
	BotID Sources `json:"bot_id,omitempty"`

	// Where the visitor's access token comes from: one placeholder, or several of
	// which the first non-empty one is used, e.g. a header, then a query parameter
	// for WebSockets. Unless `pass_token` is set, every source that is a request
	// header, query parameter or cookie placeholder is removed from the request
	// before it goes on. Default: `{http.request.header.X-Access-Token}`.
	Token Sources `json:"token,omitempty"`

	// Where the browser's origin comes from: one placeholder or several. Default
	// (none): the `Origin` header when present (even `null`), otherwise the origin of
	// the `Referer` header.
	Origin Sources `json:"origin,omitempty"`

	// Visitor-supplied fields, by name, and where each comes from (one placeholder or
	// several). These are the fields a bot may `forward` to its identity API and that
	// the primary-key check compares. The defaults are always present unless
	// overridden: `user_id` `{http.request.header.X-User-Id}`,
	// `email` `{http.request.header.X-User-Email}`,
	// `phone_number` `{http.request.header.X-User-Phone}`.
	Fields map[string]Sources `json:"fields,omitempty"`

	// Keeps the access token in the request passed on to the backend. The token is
	// the customer's secret, so by default it is removed. Default: false.
	PassToken bool `json:"pass_token,omitempty"`

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

	// Memory bound, in bytes, of all caches together. In the Caddyfile, a size such
	// as `64MB` (10^6-byte units) or `64MiB` (2^20-byte units). Default: 64MB
	// (64,000,000 bytes).
	CacheSize int64 `json:"cache_size,omitempty"`

	// What a failed identification does: `fallback` passes the request on without
	// contact headers; `reject` answers 401 instead (never for `unknown_bot`,
	// `disabled` or `preflight`). Default: `fallback`.
	OnFail string `json:"on_fail,omitempty"`

	// Makes the handler the auth service of another proxy (nginx's `auth_request`,
	// ingress-nginx's `auth-url`): instead of passing the request on, it answers with
	// the verdict, `200` with the headers the backend is to receive plus
	// `<prefix>Status` and `<prefix>Reason` (with `on_fail reject`, a `401` problem
	// for a rejectable fallback). Query-parameter sources are read from the original
	// URI in the `X-Original-URI` header. Default: false, the request is passed on.
	Answer bool `json:"answer,omitempty"`

	// A Redis or Valkey server through which the gateways of a fleet share verdicts
	// and purges. Default: none, each gateway caches on its own.
	SharedCache *SharedCache `json:"shared_cache,omitempty"`

	// Where settings of bots that are not listed in `bots` come from.
	// Default: none, such bots are unknown.
	BotsURL *BotsSource `json:"bots_url,omitempty"`

	// Settings by bot id; the id `*` applies to every bot not listed.
	Bots map[string]*Bot `json:"bots,omitempty"`

	visits   visitSources
	prefix   string
	contact  contactHeaders
	reject   bool
	flow     // steps 1–3 (flow.go), and the environment the handler's parts share
	breakers *listedBreakers
	caches   *caches
	shared   *sharedCache     // nil without shared_cache
	marks    *purgeMarks      // the process's; tests give a handler its own
	metrics  *metrics         // the process's collectors; tests give a handler its own
	now      func() time.Time // the clock; tests replace it
	logger   *zap.Logger      // instead of Caddy's; the CLI's is quiet
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
	defaultBotID           = "{http.request.header.X-Bot-Id}"
	defaultToken           = "{http.request.header.X-Access-Token}"
	defaultCacheSize int64 = 64_000_000 // 64MB, as cache_size reads it
)

var defaultFields = map[string]Sources{
	"user_id":      {"{http.request.header.X-User-Id}"},
	"email":        {"{http.request.header.X-User-Email}"},
	"phone_number": {"{http.request.header.X-User-Phone}"},
}

// Provision sets up the handler.
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.now == nil {
		h.now = time.Now
	}
	if h.logger == nil {
		h.logger = ctx.Logger()
	}
	h.env = &environment{ctx: ctx, logger: h.logger, now: h.now, client: newAPIClient(), warned: map[string]time.Time{},
		refreshSlots: newCallSlots(maxBackgroundRefreshes)}
	repl := caddy.NewReplacer()
	if err := h.compileRequestHandling(repl); err != nil {
		return err
	}
	var err error
	if h.contact.assertions, err = newAssertionSigner(assertionOptions{ttl: h.AssertionTTL, signKey: h.SignKey, signKeyFiles: h.SignKeyFiles, jwksPath: h.JWKSPath}, repl); err != nil {
		return err
	}
	if h.metrics == nil {
		if h.metrics, err = newMetrics(ctx.GetMetricsRegistry()); err != nil {
			return err
		}
	}
	h.env.metrics = h.metrics
	if h.caches, err = loadCaches(h.cacheOwner(), cmp.Or(h.CacheSize, defaultCacheSize), h.logger); err != nil {
		return err
	}
	h.env.caches = h.caches
	if h.marks == nil {
		h.marks = processMarks
	}
	if h.shared, err = loadSharedCache(h.SharedCache, repl, h.marks, h.env); err != nil {
		return err
	}
	if err := h.provisionBots(repl); err != nil {
		return err
	}
	h.identities = &cachedIdentifier{next: botIdentifier{api: &identityClient{config: ctx, metrics: h.env.metrics}},
		caches: h.caches, metrics: h.env.metrics, now: h.now, shared: h.shared, marks: h.marks}
	return nil
}

// compileRequestHandling compiles what the handler reads from a request and the
// headers it writes.
func (h *Handler) compileRequestHandling(repl *caddy.Replacer) error {
	for name := range h.Fields {
		if err := checkFieldName(name); err != nil {
			return err
		}
	}
	h.visits = visitSources{
		botID:       compileSources(orDefault(h.BotID, defaultBotID), repl),
		token:       compileSources(orDefault(h.Token, defaultToken), repl),
		origin:      compileSources(h.Origin, repl),
		fields:      compileFields(h.allFields(), repl),
		originalURI: h.Answer,
	}
	if !h.PassToken {
		for _, src := range h.visits.token {
			if !src.removable() {
				h.logger.Warn("this token source cannot be removed from the request; the backend may see the token",
					zap.String("token", src.template))
			}
		}
	}

	h.prefix = cmp.Or(h.HeaderPrefix, contact.DefaultPrefix)
	if err := checkHeaderPrefix(h.prefix, h.readHeaders()); err != nil {
		return err
	}
	h.contact.names = newContactHeaderNames(h.prefix)
	var err error
	if h.reject, err = parseOnFail(h.OnFail); err != nil {
		return err
	}
	if h.CacheSize < 0 {
		return fmt.Errorf("cache_size: must not be negative")
	}
	return nil
}

// provisionBots prepares the listed bots and the source of the others.
func (h *Handler) provisionBots(repl *caddy.Replacer) error {
	knownFields := h.visits.fieldNames()
	h.breakers = new(listedBreakers)
	listed := operatorPolicy(repl, h.env.client, h.breakers)
	h.bots = make(map[string]*botSettings, len(h.Bots))
	for id, cfg := range h.Bots {
		if err := checkBotID(id); err != nil {
			return err
		}
		if cfg == nil {
			return fmt.Errorf("bot %q: no settings", id)
		}
		h.env.metrics.bots.nameListed(id) // the operator's bots keep their metric label
		b, err := newBot(id, cfg, knownFields, listed, h.env)
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
		var err error
		if h.remoteBots, err = newRemoteBots(h.BotsURL, knownFields, h.env, repl); err != nil {
			return fmt.Errorf("bots_url: %w", err)
		}
	}
	return nil
}

// cacheOwner names the bots whose visitors this handler's caches serve.
func (h *Handler) cacheOwner() cacheOwner {
	owner := cacheOwner{Bots: slices.Sorted(maps.Keys(h.Bots))}
	if h.BotsURL != nil {
		owner.BotsURL = h.BotsURL.URL
	}
	return owner
}

// allFields are the visitor-supplied fields: the defaults, and the configured ones,
// which override them.
func (h *Handler) allFields() map[string]Sources {
	fields := maps.Clone(defaultFields)
	maps.Copy(fields, h.Fields)
	return fields
}

// readHeaders are the request headers the handler reads: those of its sources, and
// the ones the origin comes from.
func (h *Handler) readHeaders() []string {
	names := []string{"Origin", "Referer"}
	if h.Answer {
		names = append(names, originalURIHeader)
	}
	sources := []Sources{orDefault(h.BotID, defaultBotID), orDefault(h.Token, defaultToken), h.Origin}
	for _, srcs := range h.allFields() {
		sources = append(sources, srcs)
	}
	for _, srcs := range sources {
		for _, src := range srcs {
			names = append(names, headerPlaceholders(src)...)
		}
	}
	return names
}

// parseOnFail reads on_fail: whether a failed identification answers 401.
func parseOnFail(v string) (reject bool, err error) {
	switch v {
	case "", "fallback":
		return false, nil
	case "reject":
		return true, nil
	}
	return false, fmt.Errorf("on_fail: must be fallback or reject, not %q", v)
}

// checkFieldName refuses a visitor field that the identity API's body could not carry:
// `access_token` is the token's own name there.
func checkFieldName(name string) error {
	switch name {
	case "":
		return errors.New("field: the name must not be empty")
	case "access_token":
		return errors.New("field: access_token is the token's name in the identity API's body; choose another name")
	}
	return nil
}

// checkBotID refuses a bot id that no request could name.
func checkBotID(id string) error {
	if id == "" {
		return errors.New("bot: the id must not be empty")
	}
	return nil
}

// Validate checks what needs no provisioning. Most checks are in Provision, after the
// placeholders in the values are expanded; a JSON config gets the same errors as a
// Caddyfile there.
func (h *Handler) Validate() error {
	return checkJWKSPath(h.JWKSPath)
}

// Cleanup releases this config's share of the caches and breakers. Background work
// stops with the config's context. It copes with a handler whose Provision failed
// half-way.
func (h *Handler) Cleanup() error {
	if h.env != nil {
		h.env.client.CloseIdleConnections()
	}
	if h.remoteBots != nil {
		h.remoteBots.client.CloseIdleConnections()
		h.remoteBots.tenant.client.CloseIdleConnections()
	}
	var errs []error
	if h.breakers != nil {
		errs = append(errs, h.breakers.release())
	}
	if h.caches != nil {
		caches := h.caches
		h.caches = nil
		errs = append(errs, caches.release())
	}
	if h.shared != nil {
		shared := h.shared
		h.shared = nil
		errs = append(errs, shared.release())
	}
	return errors.Join(errs...)
}

// ServeHTTP follows the four steps of Custom Authentication. Whatever happens, the
// contact headers a client sent are removed first and the access token last; the
// outcome is published as placeholders, and the request goes on unless the operator
// asked for a 401, or for the verdict as the answer to another proxy.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	stripSpoofing(r, h.prefix)

	if h.JWKSPath != "" && r.URL.Path == h.JWKSPath {
		return h.contact.assertions.serveJWKS(w, r)
	}

	var out outcome
	if isPreflight(r) {
		// A browser's preflight carries no credentials: recognised before step 1.
		out.reason = reasonPreflight
	} else {
		out = h.flow.identify(r.Context(), h.visits.read(r, repl))
	}
	if !h.PassToken {
		h.visits.token.removeFrom(r) // the token is the customer's secret, not the backend's
	}
	publishOutcome(repl, out)
	out.log(h.env.logger)
	out.count(h.env.metrics)

	if h.Answer {
		return writeAnswer(w, &out, &h.contact, h.reject, h.now) // the proxy that asked passes the request on itself
	}
	if out.status == statusVerified {
		if err := h.contact.inject(r.Header, &out, h.now); err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
	} else if out.rejects(h.reject) {
		return writeProblem(w, out.reason)
	}
	return next.ServeHTTP(w, r)
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
