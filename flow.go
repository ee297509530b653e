package customauth

import (
	"context"

	"go.uber.org/zap"
)

// flow runs steps 1–3 of Custom Authentication for a visit, as the SPEC numbers them:
// it finds the bot, checks the origin against the bot's whitelist, and has the token
// verified. The handler reads the visit and delivers the outcome.
type flow struct {
	bots       map[string]*botSettings
	defaultBot *botSettings // `bot *`; nil: none
	remoteBots *remoteBots  // bots_url; nil: none
	identities identifier
	env        *environment
}

// identify runs steps 1–3 of the flow and returns the outcome, which records the step
// that decided it.
func (f *flow) identify(ctx context.Context, v visit) outcome {
	out := outcome{botID: v.botID}

	// Step 1: the bot.
	b, reason := f.lookupBot(ctx, v.botID)
	if b == nil {
		return out.fallback(stepBot, reason)
	}
	out.bot = b
	if b.off {
		return out.fallback(stepBot, reasonDisabled)
	}

	// Step 2: the domain whitelist.
	if b.hasWhitelist() && !b.allowsOrigin(ctx, v.origin) {
		return out.fallback(stepWhitelist, reasonDomainNotAllowed)
	}

	// Step 3: the identity API.
	if v.token == "" {
		return out.fallback(stepIdentity, reasonMissingToken)
	}
	res := f.identities.identify(ctx, b, identityRequest{token: v.token, fields: v.fields})
	out.cacheHit, out.apiTime, out.apiStatus, out.err = res.cacheHit, res.apiTime, res.apiStatus, res.err
	switch res.kind {
	case verdictRejected:
		return out.fallback(stepIdentity, reasonRejected)
	case verdictError:
		if ctx.Err() == nil { // a visitor who left is no news about the API
			f.env.warn("identity:"+b.id, "identity API failed; visitors of this bot fall back to anonymous",
				zap.String("bot", b.id), zap.Error(res.err))
		}
		return out.fallback(stepIdentity, reasonError)
	}
	if err := b.primaryMismatch(v.fields, res.identity); err != nil {
		out.err = err
		return out.fallback(stepIdentity, reasonIdentityMismatch)
	}

	// Step 4: verified.
	out.step = stepIdentity
	out.status = statusVerified
	out.identity = res.identity
	return out
}

// lookupBot finds the settings of a bot: listed, fetched from bots_url, or `bot *`.
func (f *flow) lookupBot(ctx context.Context, id string) (*botSettings, reason) {
	if b, ok := f.bots[id]; ok {
		return b, ""
	}
	if f.remoteBots != nil {
		b, reason := f.remoteBots.lookup(ctx, id)
		if b != nil || reason != reasonUnknownBot {
			return b, reason
		}
	}
	if f.defaultBot != nil {
		return f.defaultBot, ""
	}
	return nil, reasonUnknownBot
}
