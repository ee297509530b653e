package customauth

import (
	"fmt"
	"slices"
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
//		shared_cache <redis-url> {
//			timeout <duration>
//		}
//		bots_url <url> {
//			header      <name> <value>
//			ttl         <duration>
//			timeout     <duration>
//			max_timeout <duration>
//			allow_private
//			max_in_flight <n>
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
	if err := noArgs(d); err != nil {
		return err
	}
	var forwards []forwardUse
	var prefixAt position
	err := eachSubdirectiveOnce(d, []string{"field", "sign_key_file", "bot"}, func(name string) error {
		switch name {
		case "bot_id":
			return sourcesArgs(d, &h.BotID)
		case "token":
			return sourcesArgs(d, &h.Token)
		case "origin":
			return sourcesArgs(d, &h.Origin)
		case "field":
			return h.unmarshalField(d)
		case "header_prefix":
			prefixAt = positionOf(d)
			return stringArg(d, &h.HeaderPrefix)
		case "sign_key":
			return expandableArg(d, &h.SignKey, "sign_key", checkHMACKey)
		case "sign_key_file":
			return appendArg(d, &h.SignKeyFiles)
		case "jwks_path":
			return checkedArg(d, &h.JWKSPath, checkJWKSPath)
		case "assertion_ttl":
			return durationArg(d, &h.AssertionTTL)
		case "cache_size":
			return cacheSizeArg(d, &h.CacheSize)
		case "on_fail":
			return checkedArg(d, &h.OnFail, checkOnFail)
		case "pass_token":
			return flagArg(d, &h.PassToken)
		case "shared_cache":
			h.SharedCache = new(SharedCache)
			return h.SharedCache.unmarshalCaddyfile(d)
		case "bots_url":
			h.BotsURL = new(BotsSource)
			return h.BotsURL.unmarshalCaddyfile(d)
		case "bot":
			uses, err := h.unmarshalBot(d)
			forwards = append(forwards, uses...)
			return err
		}
		return d.Errf("unrecognized subdirective '%s'", name)
	})
	if err != nil {
		return err
	}
	return h.checkDeclaredLater(forwards, prefixAt)
}

// checkDeclaredLater checks what uses fields and sources, which may be declared after
// it: the bots' forwarded fields, and the header prefix against the headers read.
func (h *Handler) checkDeclaredLater(forwards []forwardUse, prefixAt position) error {
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

func (b *Bot) unmarshalCaddyfile(d *caddyfile.Dispenser, id string) ([]forwardUse, error) {
	var forwards []forwardUse
	err := eachSubdirectiveOnce(d, []string{"auth_header", "forward", "whitelist"}, func(name string) error {
		switch name {
		case "off":
			return flagArg(d, &b.Off)
		case "auth_url":
			return urlArg(d, &b.AuthURL)
		case "auth_header":
			return headerArgs(d, &b.AuthHeaders)
		case "forward":
			uses, err := b.unmarshalForward(d, id)
			forwards = append(forwards, uses...)
			return err
		case "identify_by":
			return checkedArg(d, &b.IdentifyBy, checkIdentifyBy)
		case "timeout":
			return durationArg(d, &b.Timeout)
		case "cache_ttl":
			b.CacheTTL = new(caddy.Duration)
			return durationArg(d, b.CacheTTL)
		case "negative_ttl":
			b.NegativeTTL = new(caddy.Duration)
			return durationArg(d, b.NegativeTTL)
		case "whitelist":
			return b.unmarshalWhitelist(d)
		case "whitelist_url":
			b.WhitelistURL = new(WhitelistSource)
			return b.WhitelistURL.unmarshalCaddyfile(d)
		case "circuit_breaker":
			b.CircuitBreaker = new(BreakerSettings)
			return b.CircuitBreaker.unmarshalCaddyfile(d)
		case "verify_jwt":
			b.VerifyJWT = new(JWTSettings)
			return b.VerifyJWT.unmarshalCaddyfile(d)
		}
		return d.Errf("unrecognized bot subdirective '%s'", name)
	})
	if err != nil {
		return nil, err
	}
	if err := b.checkIdentitySource(id); err != nil {
		return nil, d.Errf("bot %q: %v", id, err)
	}
	return forwards, nil
}

// unmarshalForward reads the fields a bot forwards, and remembers where each was
// named, to report an unknown one once all fields are known.
func (b *Bot) unmarshalForward(d *caddyfile.Dispenser, id string) ([]forwardUse, error) {
	fields := d.RemainingArgs()
	if len(fields) == 0 {
		return nil, d.ArgErr()
	}
	uses := make([]forwardUse, len(fields))
	for i, f := range fields {
		uses[i] = forwardUse{bot: id, field: f, at: positionOf(d)}
	}
	b.Forward = append(b.Forward, fields...)
	return uses, nil
}

// unmarshalWhitelist reads whitelist entries; those without placeholders are checked
// now, the others once Provision has expanded them.
func (b *Bot) unmarshalWhitelist(d *caddyfile.Dispenser) error {
	entries := d.RemainingArgs()
	if len(entries) == 0 {
		return d.ArgErr()
	}
	if _, err := compileWhitelist(withoutPlaceholders(entries)); err != nil {
		return d.Errf("whitelist: %v", err)
	}
	b.Whitelist = append(b.Whitelist, entries...)
	return nil
}

func (w *WhitelistSource) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := urlArg(d, &w.URL); err != nil {
		return err
	}
	return eachSubdirectiveOnce(d, []string{"header"}, func(name string) error {
		switch name {
		case "header":
			return headerArgs(d, &w.Headers)
		case "refresh":
			return durationArg(d, &w.Refresh)
		}
		return d.Errf("unrecognized whitelist_url subdirective '%s'", name)
	})
}

func (s *JWTSettings) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := noArgs(d); err != nil {
		return err
	}
	return eachSubdirectiveOnce(d, nil, func(name string) error {
		switch name {
		case "secret":
			return expandableArg(d, &s.Secret, "verify_jwt", checkJWTSecret)
		case "jwks_url":
			return urlArg(d, &s.JWKSURL)
		case "issuer":
			return stringArg(d, &s.Issuer)
		case "audience":
			return stringArg(d, &s.Audience)
		}
		return d.Errf("unrecognized verify_jwt subdirective '%s'", name)
	})
}

func (cb *BreakerSettings) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := noArgs(d); err != nil {
		return err
	}
	return eachSubdirectiveOnce(d, nil, func(name string) error {
		switch name {
		case "failures":
			return countArg(d, &cb.Failures)
		case "open_for":
			return durationArg(d, &cb.OpenFor)
		}
		return d.Errf("unrecognized circuit_breaker subdirective '%s'", name)
	})
}

func (sc *SharedCache) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	// The error never quotes the URL: it carries the password.
	if err := expandableArg(d, &sc.URL, "shared_cache", checkSharedCacheURL); err != nil {
		return err
	}
	return eachSubdirectiveOnce(d, nil, func(name string) error {
		switch name {
		case "timeout":
			return durationArg(d, &sc.Timeout)
		}
		return d.Errf("unrecognized shared_cache subdirective '%s'", name)
	})
}

func (s *BotsSource) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := urlArg(d, &s.URL); err != nil {
		return err
	}
	return eachSubdirectiveOnce(d, []string{"header"}, func(name string) error {
		switch name {
		case "header":
			return headerArgs(d, &s.Headers)
		case "ttl":
			return durationArg(d, &s.TTL)
		case "timeout":
			return durationArg(d, &s.Timeout)
		case "max_timeout":
			return durationArg(d, &s.MaxTimeout)
		case "allow_private":
			return flagArg(d, &s.AllowPrivate)
		case "max_in_flight":
			return countArg(d, &s.MaxInFlight)
		}
		return d.Errf("unrecognized bots_url subdirective '%s'", name)
	})
}

// eachSubdirective calls parse with the name of each subdirective in the block that
// follows, the dispenser on that name.
func eachSubdirective(d *caddyfile.Dispenser, parse func(name string) error) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := parse(d.Val()); err != nil {
			return err
		}
	}
	return nil
}

// eachSubdirectiveOnce is eachSubdirective, refusing a subdirective given twice in the
// block unless it is repeatable.
func eachSubdirectiveOnce(d *caddyfile.Dispenser, repeatable []string, parse func(name string) error) error {
	seen := map[string]bool{}
	return eachSubdirective(d, func(name string) error {
		if seen[name] && !slices.Contains(repeatable, name) {
			return d.Errf("%s: given twice", name)
		}
		seen[name] = true
		return parse(name)
	})
}

// noArgs refuses arguments where a subdirective takes none.
func noArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// flagArg reads a subdirective that takes no argument and turns its setting on.
func flagArg(d *caddyfile.Dispenser, v *bool) error {
	if err := noArgs(d); err != nil {
		return err
	}
	*v = true
	return nil
}

// stringArg reads the one argument of a subdirective.
func stringArg(d *caddyfile.Dispenser, v *string) error {
	if !d.AllArgs(v) {
		return d.ArgErr()
	}
	return nil
}

// appendArg reads the one argument of a repeatable subdirective onto a list.
func appendArg(d *caddyfile.Dispenser, list *[]string) error {
	var v string
	if err := stringArg(d, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// checkedArg reads one argument and checks it with the check Provision makes.
func checkedArg(d *caddyfile.Dispenser, v *string, check func(string) error) error {
	if err := stringArg(d, v); err != nil {
		return err
	}
	if err := check(*v); err != nil {
		return d.WrapErr(err)
	}
	return nil
}

// expandableArg reads one argument that may hold placeholders: one without is checked
// now, one with once Provision has expanded it. An error names the option.
func expandableArg(d *caddyfile.Dispenser, v *string, option string, check func(string) error) error {
	if err := stringArg(d, v); err != nil {
		return err
	}
	if strings.Contains(*v, "{") {
		return nil
	}
	if err := check(*v); err != nil {
		return d.Errf("%s: %v", option, err)
	}
	return nil
}

// urlArg reads a URL; one with placeholders is checked once they are expanded.
func urlArg(d *caddyfile.Dispenser, v *string) error {
	return expandableArg(d, v, d.Val(), checkURL)
}

// countArg reads a whole number of at least 1.
func countArg(d *caddyfile.Dispenser, v *int) error {
	name := d.Val()
	var n string
	if err := stringArg(d, &n); err != nil {
		return err
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		return d.Errf("%s: must be a whole number of at least 1, not %q", name, n)
	}
	*v = count
	return nil
}

// checkHMACKey checks a sign_key as the assertion signer will.
func checkHMACKey(key string) error {
	_, err := contact.NewHMACSigner([]byte(key))
	return err
}

func checkOnFail(v string) error {
	_, err := parseOnFail(v)
	return err
}

func checkIdentifyBy(v string) error {
	_, err := primaryFieldOf(v)
	return err
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
