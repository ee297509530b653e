package customauth

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
	"golang.org/x/net/http/httpguts"

	"github.com/custom-auth/custom_auth/contact"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("custom_auth", parseCaddyfile)
	// After forward_auth and before every routing and responding directive, so that a
	// top-level custom_auth runs before `handle`, `route`, `respond`, `reverse_proxy`…
	httpcaddyfile.RegisterDirectiveOrder("custom_auth", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	custom_auth [<matcher>] {
//		bot_id        <placeholder>...
//		token         <placeholder>...
//		origin        <placeholder>...
//		field         <name> <placeholder>...
//		header_prefix <prefix>
//		sign_key      <secret>
//		sign_key_file <pem-file>
//		jwks_path     <path>
//		assertion_ttl <duration>
//		cache_size    <size>
//		on_fail       fallback|reject
//		pass_token
//		bots_url <url> {
//			header      <name> <value>
//			ttl         <duration>
//			timeout     <duration>
//			max_timeout <duration>
//			allow_private
//		}
//		bot <bot-id>|* {
//			off
//			auth_url     <url>
//			auth_header  <name> <value>
//			forward      <field>...
//			identify_by  id|email|phone_number
//			timeout      <duration>
//			cache_ttl    <duration>
//			negative_ttl <duration>
//			whitelist    <domain>...
//			whitelist_url <url> {
//				header  <name> <value>
//				refresh <duration>
//			}
//			circuit_breaker {
//				failures <count>
//				open_for <duration>
//			}
//			verify_jwt {
//				secret   <hs256-secret>
//				jwks_url <url>
//				issuer   <iss>
//				audience <aud>
//			}
//		}
//	}
//
// Where several placeholders are given, the first one with a non-empty value is used.
// Every subdirective but `field`, `sign_key_file`, `whitelist`, `forward`, `auth_header`,
// `header` and `bot` may be given once.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	var forwards []forwardUse
	var prefixAt position
	seen := map[string]bool{}
	for d.NextBlock(0) {
		if err := once(d, seen, "field", "sign_key_file", "bot"); err != nil {
			return err
		}
		switch d.Val() {
		case "bot_id":
			if err := sourcesArgs(d, &h.BotID); err != nil {
				return err
			}
		case "token":
			if err := sourcesArgs(d, &h.Token); err != nil {
				return err
			}
		case "origin":
			if err := sourcesArgs(d, &h.Origin); err != nil {
				return err
			}
		case "field":
			if err := h.unmarshalField(d); err != nil {
				return err
			}
		case "header_prefix":
			if !d.AllArgs(&h.HeaderPrefix) {
				return d.ArgErr()
			}
			prefixAt = positionOf(d)
		case "sign_key":
			if !d.AllArgs(&h.SignKey) {
				return d.ArgErr()
			}
			if !strings.Contains(h.SignKey, "{") {
				if _, err := contact.NewHMACSigner([]byte(h.SignKey)); err != nil {
					return d.Errf("sign_key: %v", err)
				}
			}
		case "sign_key_file":
			var file string
			if !d.AllArgs(&file) {
				return d.ArgErr()
			}
			h.SignKeyFiles = append(h.SignKeyFiles, file)
		case "jwks_path":
			if !d.AllArgs(&h.JWKSPath) {
				return d.ArgErr()
			}
			if err := checkJWKSPath(h.JWKSPath); err != nil {
				return d.WrapErr(err)
			}
		case "assertion_ttl":
			if err := durationArg(d, &h.AssertionTTL); err != nil {
				return err
			}
		case "cache_size":
			if err := cacheSizeArg(d, &h.CacheSize); err != nil {
				return err
			}
		case "on_fail":
			if !d.AllArgs(&h.OnFail) {
				return d.ArgErr()
			}
			if _, err := parseOnFail(h.OnFail); err != nil {
				return d.WrapErr(err)
			}
		case "pass_token":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.PassToken = true
		case "bots_url":
			h.BotsURL = new(BotsSource)
			if err := h.BotsURL.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "bot":
			uses, err := h.unmarshalBot(d)
			if err != nil {
				return err
			}
			forwards = append(forwards, uses...)
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	// Fields and sources may be declared after what uses them.
	for _, use := range forwards {
		if _, ok := h.allFields()[use.field]; !ok {
			return use.at.wrap(fmt.Errorf("bot %q: forward: unknown field %q (define it with `field %s <placeholder>`)", use.bot, use.field, use.field))
		}
	}
	if h.HeaderPrefix != "" {
		if err := checkHeaderPrefix(h.HeaderPrefix, h.readHeaders()); err != nil {
			return prefixAt.wrap(err)
		}
	}
	return nil
}

func (h *Handler) unmarshalField(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	if err := checkFieldName(name); err != nil {
		return d.WrapErr(err)
	}
	if _, dup := h.Fields[name]; dup {
		return d.Errf("field %s: given twice", name)
	}
	var srcs Sources
	if err := sourcesArgs(d, &srcs); err != nil {
		return err
	}
	if h.Fields == nil {
		h.Fields = map[string]Sources{}
	}
	h.Fields[name] = srcs
	return nil
}

func (h *Handler) unmarshalBot(d *caddyfile.Dispenser) ([]forwardUse, error) {
	var id string
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	id = d.Val()
	if err := checkBotID(id); err != nil {
		return nil, d.WrapErr(err)
	}
	if _, dup := h.Bots[id]; dup {
		return nil, d.Errf("bot %q: configured twice", id)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	b := new(Bot)
	uses, err := b.unmarshalCaddyfile(d, id)
	if err != nil {
		return nil, err
	}
	if h.Bots == nil {
		h.Bots = map[string]*Bot{}
	}
	h.Bots[id] = b
	return uses, nil
}

// forwardUse remembers where a forwarded field was named, to report an unknown one
// once all fields are known.
type forwardUse struct {
	bot, field string
	at         position
}

// position is a place in a Caddyfile, to report an error found after the parser has
// moved on.
type position struct {
	file string
	line int
}

func positionOf(d *caddyfile.Dispenser) position { return position{file: d.File(), line: d.Line()} }

// wrap adds the position the way caddyfile.Dispenser.WrapErr does.
func (p position) wrap(err error) error {
	return fmt.Errorf("%w, at %s:%d", err, p.file, p.line)
}

// once refuses a subdirective given twice in one block, except the repeatable ones.
func once(d *caddyfile.Dispenser, seen map[string]bool, repeatable ...string) error {
	name := d.Val()
	for _, r := range repeatable {
		if name == r {
			return nil
		}
	}
	if seen[name] {
		return d.Errf("%s: given twice", name)
	}
	seen[name] = true
	return nil
}

func (b *Bot) unmarshalCaddyfile(d *caddyfile.Dispenser, id string) ([]forwardUse, error) {
	var forwards []forwardUse
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, seen, "auth_header", "forward", "whitelist"); err != nil {
			return nil, err
		}
		switch d.Val() {
		case "off":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			b.Off = true
		case "auth_url":
			if err := urlArg(d, &b.AuthURL); err != nil {
				return nil, err
			}
		case "auth_header":
			if err := headerArgs(d, &b.AuthHeaders); err != nil {
				return nil, err
			}
		case "forward":
			fields := d.RemainingArgs()
			if len(fields) == 0 {
				return nil, d.ArgErr()
			}
			for _, f := range fields {
				forwards = append(forwards, forwardUse{bot: id, field: f, at: positionOf(d)})
			}
			b.Forward = append(b.Forward, fields...)
		case "identify_by":
			if !d.AllArgs(&b.IdentifyBy) {
				return nil, d.ArgErr()
			}
			if _, err := primaryFieldOf(b.IdentifyBy); err != nil {
				return nil, d.WrapErr(err)
			}
		case "timeout":
			if err := durationArg(d, &b.Timeout); err != nil {
				return nil, err
			}
		case "cache_ttl":
			b.CacheTTL = new(caddy.Duration)
			if err := durationArg(d, b.CacheTTL); err != nil {
				return nil, err
			}
		case "negative_ttl":
			b.NegativeTTL = new(caddy.Duration)
			if err := durationArg(d, b.NegativeTTL); err != nil {
				return nil, err
			}
		case "whitelist":
			entries := d.RemainingArgs()
			if len(entries) == 0 {
				return nil, d.ArgErr()
			}
			if _, err := compileWhitelist(withoutPlaceholders(entries)); err != nil {
				return nil, d.Errf("whitelist: %v", err)
			}
			b.Whitelist = append(b.Whitelist, entries...)
		case "whitelist_url":
			b.WhitelistURL = new(WhitelistSource)
			if err := b.WhitelistURL.unmarshalCaddyfile(d); err != nil {
				return nil, err
			}
		case "circuit_breaker":
			b.CircuitBreaker = new(BreakerSettings)
			if err := b.CircuitBreaker.unmarshalCaddyfile(d); err != nil {
				return nil, err
			}
		case "verify_jwt":
			b.VerifyJWT = new(JWTSettings)
			if err := b.VerifyJWT.unmarshalCaddyfile(d); err != nil {
				return nil, err
			}
		default:
			return nil, d.Errf("unrecognized bot subdirective '%s'", d.Val())
		}
	}
	if err := b.checkIdentitySource(id); err != nil {
		return nil, d.Errf("bot %q: %v", id, err)
	}
	return forwards, nil
}

func (w *WhitelistSource) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := urlArg(d, &w.URL); err != nil {
		return err
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, seen, "header"); err != nil {
			return err
		}
		switch d.Val() {
		case "header":
			if err := headerArgs(d, &w.Headers); err != nil {
				return err
			}
		case "refresh":
			if err := durationArg(d, &w.Refresh); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized whitelist_url subdirective '%s'", d.Val())
		}
	}
	return nil
}

func (s *JWTSettings) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, seen); err != nil {
			return err
		}
		switch d.Val() {
		case "secret":
			if !d.AllArgs(&s.Secret) {
				return d.ArgErr()
			}
			if !strings.Contains(s.Secret, "{") {
				if err := checkJWTSecret(s.Secret); err != nil {
					return d.Errf("verify_jwt: %v", err)
				}
			}
		case "jwks_url":
			if err := urlArg(d, &s.JWKSURL); err != nil {
				return err
			}
		case "issuer":
			if !d.AllArgs(&s.Issuer) {
				return d.ArgErr()
			}
		case "audience":
			if !d.AllArgs(&s.Audience) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized verify_jwt subdirective '%s'", d.Val())
		}
	}
	return nil
}

func (cb *BreakerSettings) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, seen); err != nil {
			return err
		}
		switch d.Val() {
		case "failures":
			var n string
			if !d.AllArgs(&n) {
				return d.ArgErr()
			}
			count, err := strconv.Atoi(n)
			if err != nil || count < 1 {
				return d.Errf("failures: must be a whole number of at least 1, not %q", n)
			}
			cb.Failures = count
		case "open_for":
			if err := durationArg(d, &cb.OpenFor); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized circuit_breaker subdirective '%s'", d.Val())
		}
	}
	return nil
}

func (s *BotsSource) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := urlArg(d, &s.URL); err != nil {
		return err
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := once(d, seen, "header"); err != nil {
			return err
		}
		switch d.Val() {
		case "header":
			if err := headerArgs(d, &s.Headers); err != nil {
				return err
			}
		case "ttl":
			if err := durationArg(d, &s.TTL); err != nil {
				return err
			}
		case "timeout":
			if err := durationArg(d, &s.Timeout); err != nil {
				return err
			}
		case "max_timeout":
			if err := durationArg(d, &s.MaxTimeout); err != nil {
				return err
			}
		case "allow_private":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.AllowPrivate = true
		default:
			return d.Errf("unrecognized bots_url subdirective '%s'", d.Val())
		}
	}
	return nil
}

// sourcesArgs reads one placeholder or several.
func sourcesArgs(d *caddyfile.Dispenser, srcs *Sources) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*srcs = args
	return nil
}

func durationArg(d *caddyfile.Dispenser, v *caddy.Duration) error {
	name := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: invalid duration %q: %v", name, s, err)
	}
	if dur < 0 {
		return d.Errf("%s: must not be negative", name)
	}
	*v = caddy.Duration(dur)
	return nil
}

// cacheSizeArg reads a size in bytes with humanize's units: `64MB` is 64,000,000
// bytes (as the default), `64MiB` 64 × 2^20, a plain number is bytes.
func cacheSizeArg(d *caddyfile.Dispenser, v *int64) error {
	var size string
	if !d.AllArgs(&size) {
		return d.ArgErr()
	}
	bytes, err := humanize.ParseBytes(size)
	if err != nil || bytes == 0 || bytes > 1<<50 {
		return d.Errf("cache_size: invalid size %q, e.g. 64MB", size)
	}
	*v = int64(bytes)
	return nil
}

// urlArg reads a URL; one with placeholders is checked once they are expanded.
func urlArg(d *caddyfile.Dispenser, v *string) error {
	name := d.Val()
	if !d.AllArgs(v) {
		return d.ArgErr()
	}
	if !strings.Contains(*v, "{") {
		if err := checkURL(*v); err != nil {
			return d.Errf("%s: %v", name, err)
		}
	}
	return nil
}

func headerArgs(d *caddyfile.Dispenser, headers *map[string]string) error {
	directive := d.Val()
	var name, value string
	if !d.AllArgs(&name, &value) {
		return d.ArgErr()
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return d.Errf("%s: invalid header name %q", directive, name)
	}
	if value == "" {
		return d.Errf("%s %s: the value is empty", directive, name)
	}
	if _, dup := (*headers)[name]; dup {
		return d.Errf("%s %s: given twice", directive, name)
	}
	if *headers == nil {
		*headers = map[string]string{}
	}
	(*headers)[name] = value
	return nil
}

func withoutPlaceholders(entries []string) []string {
	var out []string
	for _, e := range entries {
		if !strings.Contains(e, "{") {
			out = append(out, e)
		}
	}
	return out
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
