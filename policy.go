package customauth

import (
	"context"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

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
	// refreshSlots bounds those refreshes: the tenants' own pool; nil: the
	// environment's, the operator's.
	refreshSlots callSlots
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

// refreshSlotsOf bounds the background refreshes of a bot's fetched values.
func (p *botPolicy) refreshSlotsOf(env *environment) callSlots {
	if p.refreshSlots != nil {
		return p.refreshSlots
	}
	return env.refreshSlots
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
func (p *botPolicy) breakerFor(botID, url string, tuning breakerTuning, openGauge prometheus.Gauge) *breaker {
	if p.breakers == nil {
		return newBreaker(botID, tuning, openGauge)
	}
	return p.breakers.load(botID, url, tuning, openGauge)
}
