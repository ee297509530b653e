package customauth

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
	"golang.org/x/net/http/httpguts"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("custom_auth", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("custom_auth", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	custom_auth [<matcher>] {
//		bot_id        <placeholder>
//		token         <placeholder>
//		origin        <placeholder>
//		field         <name> <placeholder>
//		header_prefix <prefix>
//		sign_key      <secret>
//		sign_key_file <pem-file>
//		jwks_path     <path>
//		assertion_ttl <duration>
//		cache_size    <size>
//		on_fail       fallback|reject
//		bots_url <url> {
//			header <name> <value>
//			ttl    <duration>
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
//		}
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	var forwards []forwardUse
	for d.NextBlock(0) {
		switch d.Val() {
		case "bot_id":
			if err := singleArg(d, &h.BotID); err != nil {
				return err
			}
		case "token":
			if err := singleArg(d, &h.Token); err != nil {
				return err
			}
		case "origin":
			if err := singleArg(d, &h.Origin); err != nil {
				return err
			}
		case "field":
			var name, source string
			if !d.Args(&name, &source) || d.NextArg() {
				return d.ArgErr()
			}
			if h.Fields == nil {
				h.Fields = map[string]string{}
			}
			h.Fields[name] = source
		case "header_prefix":
			if err := singleArg(d, &h.HeaderPrefix); err != nil {
				return err
			}
			if err := checkHeaderPrefix(h.HeaderPrefix); err != nil {
				return d.Err(err.Error())
			}
		case "sign_key":
			if err := singleArg(d, &h.SignKey); err != nil {
				return err
			}
			if !strings.Contains(h.SignKey, "{") && len(h.SignKey) < minSignKeyLength {
				return d.Errf("sign_key: must be at least %d bytes", minSignKeyLength)
			}
		case "sign_key_file":
			var file string
			if err := singleArg(d, &file); err != nil {
				return err
			}
			h.SignKeyFiles = append(h.SignKeyFiles, file)
		case "jwks_path":
			if err := singleArg(d, &h.JWKSPath); err != nil {
				return err
			}
			if !strings.HasPrefix(h.JWKSPath, "/") {
				return d.Err("jwks_path: must start with /")
			}
		case "assertion_ttl":
			if err := durationArg(d, &h.AssertionTTL); err != nil {
				return err
			}
		case "cache_size":
			var size string
			if err := singleArg(d, &size); err != nil {
				return err
			}
			bytes, err := humanize.ParseBytes(size)
			if err != nil || bytes == 0 || bytes > 1<<50 {
				return d.Errf("cache_size: invalid size %q, e.g. 64MB", size)
			}
			h.CacheSize = int64(bytes)
		case "on_fail":
			if err := singleArg(d, &h.OnFail); err != nil {
				return err
			}
			if h.OnFail != "fallback" && h.OnFail != "reject" {
				return d.Errf("on_fail: must be fallback or reject, not %q", h.OnFail)
			}
		case "bots_url":
			if h.BotsURL != nil {
				return d.Err("bots_url: given twice")
			}
			h.BotsURL = new(BotsSource)
			if err := h.BotsURL.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "bot":
			var id string
			if err := singleArg(d, &id); err != nil {
				return err
			}
			if _, dup := h.Bots[id]; dup {
				return d.Errf("bot %q: configured twice", id)
			}
			b := new(Bot)
			uses, err := b.unmarshalCaddyfile(d, id)
			if err != nil {
				return err
			}
			forwards = append(forwards, uses...)
			if h.Bots == nil {
				h.Bots = map[string]*Bot{}
			}
			h.Bots[id] = b
		default:
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
	}
	// Fields may be declared after the bots that forward them.
	for _, use := range forwards {
		if _, ok := h.Fields[use.field]; !ok && defaultFields[use.field] == "" {
			return use.err
		}
	}
	return nil
}

// forwardUse remembers where a forwarded field was named, to report an unknown one
// once all fields are known.
type forwardUse struct {
	field string
	err   error
}

func (b *Bot) unmarshalCaddyfile(d *caddyfile.Dispenser, id string) ([]forwardUse, error) {
	var forwards []forwardUse
	for nesting := d.Nesting(); d.NextBlock(nesting); {
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
				forwards = append(forwards, forwardUse{field: f, err: d.Errf("bot %q: forward: unknown field %q (define it with `field %s <placeholder>`)", id, f, f)})
			}
			b.Forward = append(b.Forward, fields...)
		case "identify_by":
			if err := singleArg(d, &b.IdentifyBy); err != nil {
				return nil, err
			}
			if _, ok := identifyByField[b.IdentifyBy]; !ok {
				return nil, d.Errf("identify_by: must be id, email or phone_number, not %q", b.IdentifyBy)
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
			if b.WhitelistURL != nil {
				return nil, d.Err("whitelist_url: given twice")
			}
			b.WhitelistURL = new(WhitelistSource)
			if err := b.WhitelistURL.unmarshalCaddyfile(d); err != nil {
				return nil, err
			}
		case "circuit_breaker":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			b.CircuitBreaker = new(BreakerSettings)
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "failures":
					var n string
					if err := singleArg(d, &n); err != nil {
						return nil, err
					}
					count, err := strconv.Atoi(n)
					if err != nil || count < 1 {
						return nil, d.Errf("failures: must be a whole number of at least 1, not %q", n)
					}
					b.CircuitBreaker.Failures = count
				case "open_for":
					if err := durationArg(d, &b.CircuitBreaker.OpenFor); err != nil {
						return nil, err
					}
				default:
					return nil, d.Errf("unrecognized circuit_breaker subdirective '%s'", d.Val())
				}
			}
		default:
			return nil, d.Errf("unrecognized bot subdirective '%s'", d.Val())
		}
	}
	if !b.Off && b.AuthURL == "" {
		return nil, d.Errf("bot %q: auth_url is required unless the bot is off", id)
	}
	return forwards, nil
}

func (w *WhitelistSource) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := urlArg(d, &w.URL); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
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

func (s *BotsSource) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := urlArg(d, &s.URL); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
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
		default:
			return d.Errf("unrecognized bots_url subdirective '%s'", d.Val())
		}
	}
	return nil
}

// singleArg reads exactly one argument.
func singleArg(d *caddyfile.Dispenser, v *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*v = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func durationArg(d *caddyfile.Dispenser, v *caddy.Duration) error {
	name := d.Val()
	var s string
	if err := singleArg(d, &s); err != nil {
		return err
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

// urlArg reads a URL; one with placeholders is checked once they are expanded.
func urlArg(d *caddyfile.Dispenser, v *string) error {
	name := d.Val()
	if err := singleArg(d, v); err != nil {
		return err
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
	if !d.Args(&name, &value) || d.NextArg() {
		return d.ArgErr()
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return d.Errf("%s: invalid header name %q", directive, name)
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
