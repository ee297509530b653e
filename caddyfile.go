package customauth

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

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
//		answer
//		shared_cache <redis-url> {
//			timeout    <duration>
//			tls_ca     <pem-file>
//			tls_client <cert-file> <key-file>
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
// `header` and `bot` may be given once. A value that expands to nothing here, such as an
// unset {env.X}, is warned about with its line; Provision refuses it.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if err := noArgs(d); err != nil {
		return err
	}
	var later laterChecks
	err := eachSubdirective(d, handlerBlock, func(name string) error {
		switch name {
		case "bot_id":
			return sourcesArgs(d, &h.BotID)
		case "token":
			later.add(d, (*Handler).warnUnremovableToken)
			return sourcesArgs(d, &h.Token)
		case "origin":
			return sourcesArgs(d, &h.Origin)
		case "field":
			return h.unmarshalField(d)
		case "header_prefix":
			later.add(d, (*Handler).checkPrefixOfReadHeaders)
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
		case "answer":
			return flagArg(d, &h.Answer)
		case "shared_cache":
			h.SharedCache = new(SharedCache)
			return h.SharedCache.unmarshalCaddyfile(d)
		case "bots_url":
			h.BotsURL = new(BotsSource)
			return h.BotsURL.unmarshalCaddyfile(d)
		case "bot":
			return h.unmarshalBot(d, &later)
		}
		return errNoCase
	})
	if err != nil {
		return err
	}
	return later.run(h)
}

// The subdirectives of each block: a block accepts these and no others, suggests the
// closest of them for a misspelt one, and refuses one given twice unless it is
// repeatable. To add a subdirective, add its name here, and to its block's parser a
// case that calls the reader of its argument.
var (
	handlerBlock = block{
		once: []string{"bot_id", "token", "origin", "header_prefix", "sign_key", "jwks_path",
			"assertion_ttl", "cache_size", "on_fail", "pass_token", "answer", "shared_cache", "bots_url"},
		repeatable: []string{"field", "sign_key_file", "bot"},
	}
	botBlock = block{name: "bot",
		once: []string{"off", "auth_url", "identify_by", "timeout", "cache_ttl", "negative_ttl",
			"whitelist_url", "circuit_breaker", "verify_jwt"},
		repeatable: []string{"auth_header", "forward", "whitelist"},
	}
	whitelistURLBlock   = block{name: "whitelist_url", once: []string{"refresh"}, repeatable: []string{"header"}}
	verifyJWTBlock      = block{name: "verify_jwt", once: []string{"secret", "jwks_url", "issuer", "audience"}}
	circuitBreakerBlock = block{name: "circuit_breaker", once: []string{"failures", "open_for"}}
	sharedCacheBlock    = block{name: "shared_cache", once: []string{"timeout", "tls_ca", "tls_client"}}
	botsURLBlock        = block{name: "bots_url", once: []string{"ttl", "timeout", "max_timeout", "allow_private", "max_in_flight"}, repeatable: []string{"header"}}
)

// checkPrefixOfReadHeaders checks the header prefix against the headers read, whose
// sources may be declared after it.
func (h *Handler) checkPrefixOfReadHeaders(*caddyfile.Dispenser) error {
	if h.HeaderPrefix == "" {
		return nil
	}
	return checkHeaderPrefix(h.HeaderPrefix, h.readHeaders())
}

// warnUnremovableToken warns of a token source, such as `Bearer {…}`, that cannot be
// removed from the request: unless pass_token, which may come later, the backend may
// see the token. Provision warns too, without the line.
func (h *Handler) warnUnremovableToken(at *caddyfile.Dispenser) error {
	for _, src := range compileSources(h.Token, caddy.NewReplacer()) {
		if !h.PassToken && !src.removable() {
			warnAt(at, "token: this source cannot be removed from the request; the backend may see the token",
				zap.String("token", src.template))
		}
	}
	return nil
}

func (h *Handler) unmarshalBot(d *caddyfile.Dispenser, later *laterChecks) error {
	var id string
	if !d.AllArgs(&id) {
		return d.ArgErr()
	}
	if err := checkBotID(id); err != nil {
		return d.WrapErr(err)
	}
	if _, dup := h.Bots[id]; dup {
		return d.Errf("bot %q: configured twice", id)
	}
	b := new(Bot)
	if err := b.unmarshalCaddyfile(d, id, later); err != nil {
		return err
	}
	if h.Bots == nil {
		h.Bots = map[string]*Bot{}
	}
	h.Bots[id] = b
	return nil
}

func (b *Bot) unmarshalCaddyfile(d *caddyfile.Dispenser, id string, later *laterChecks) error {
	err := eachSubdirective(d, botBlock, func(name string) error {
		switch name {
		case "off":
			return flagArg(d, &b.Off)
		case "auth_url":
			return urlArg(d, &b.AuthURL)
		case "auth_header":
			return headerArgs(d, &b.AuthHeaders)
		case "forward":
			return b.unmarshalForward(d, id, later)
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
		return errNoCase
	})
	if err != nil {
		return err
	}
	if err := b.checkIdentitySource(id); err != nil {
		return d.Errf("bot %q: %v", id, err)
	}
	return nil
}

// unmarshalForward reads the fields a bot forwards; they are checked once the block is
// read, as a field may be declared after the bot.
func (b *Bot) unmarshalForward(d *caddyfile.Dispenser, id string, later *laterChecks) error {
	fields := d.RemainingArgs()
	if len(fields) == 0 {
		return d.ArgErr()
	}
	later.add(d, func(h *Handler, _ *caddyfile.Dispenser) error {
		known := map[string]bool{}
		for name := range h.allFields() {
			known[name] = true
		}
		if _, err := forwardedFields(fields, known); err != nil {
			return fmt.Errorf("bot %q: %w", id, err)
		}
		return nil
	})
	b.Forward = append(b.Forward, fields...)
	return nil
}

func (w *WhitelistSource) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := urlArg(d, &w.URL); err != nil {
		return err
	}
	return eachSubdirective(d, whitelistURLBlock, func(name string) error {
		switch name {
		case "header":
			return headerArgs(d, &w.Headers)
		case "refresh":
			return durationArg(d, &w.Refresh)
		}
		return errNoCase
	})
}

func (s *JWTSettings) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := noArgs(d); err != nil {
		return err
	}
	return eachSubdirective(d, verifyJWTBlock, func(name string) error {
		switch name {
		case "secret":
			return expandableArg(d, &s.Secret, "verify_jwt", checkJWTSecret)
		case "jwks_url":
			return urlArg(d, &s.JWKSURL)
		case "issuer":
			return expandableArg(d, &s.Issuer, "issuer", nil)
		case "audience":
			return expandableArg(d, &s.Audience, "audience", nil)
		}
		return errNoCase
	})
}

func (cb *BreakerSettings) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := noArgs(d); err != nil {
		return err
	}
	return eachSubdirective(d, circuitBreakerBlock, func(name string) error {
		switch name {
		case "failures":
			return countArg(d, &cb.Failures)
		case "open_for":
			return durationArg(d, &cb.OpenFor)
		}
		return errNoCase
	})
}

func (sc *SharedCache) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	// The error never quotes the URL: it carries the password.
	if err := expandableArg(d, &sc.URL, "shared_cache", checkSharedCacheURL); err != nil {
		return err
	}
	return eachSubdirective(d, sharedCacheBlock, func(name string) error {
		switch name {
		case "timeout":
			return durationArg(d, &sc.Timeout)
		case "tls_ca":
			return stringArg(d, &sc.TLSCA)
		case "tls_client":
			if !d.AllArgs(&sc.TLSClientCert, &sc.TLSClientKey) {
				return d.ArgErr()
			}
			return nil
		}
		return errNoCase
	})
}

func (s *BotsSource) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if err := urlArg(d, &s.URL); err != nil {
		return err
	}
	return eachSubdirective(d, botsURLBlock, func(name string) error {
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
		return errNoCase
	})
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
