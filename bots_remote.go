package customauth

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

const (
	defaultBotsTTL     = time.Minute
	defaultBotsTimeout = 3 * time.Second
	// maxBotSettingsSize bounds a bot settings answer. A bot's settings are a few
	// hundred bytes; 64 KiB leaves room for a manual whitelist of a few thousand
	// entries (about 1 MB once compiled, counted in the cache), while a longer list
	// belongs behind whitelist_url.
	maxBotSettingsSize = 64 << 10
	// maxBotIDLength bounds a bot id that may be looked up.
	maxBotIDLength = 256
)

// remoteBots fetches and caches bot settings from bots_url.
type remoteBots struct {
	base    string
	headers http.Header
	// client asks bots_url: the operator's client, its calls counted in slots.
	client *http.Client
	// slots bounds the calls in flight of all remote bots together (max_in_flight).
	slots       callSlots
	timeout     time.Duration
	knownFields map[string]bool
	// tenant is what the bots may do: their settings are written by tenants.
	tenant      *botPolicy
	env         *environment
	cachePrefix string
	settings    remoteValue[*remoteBot] // by cachePrefix + bot id
}

// remoteBot is what bots_url said of one bot, as cached.
type remoteBot struct {
	bot      *botSettings // nil when unknown or invalid
	settings []byte       // the answer, to keep the bot (and its fetched whitelist) when unchanged
	invalid  error        // why the answer could not be used
	// env is the config the bot was prepared for, under whose context its background
	// work (whitelist and JWKS refreshes) runs; stop ends that work.
	env  *environment
	stop context.CancelFunc
	gone atomic.Bool // evicted from the cache
}

func newRemoteBots(cfg *BotsSource, knownFields map[string]bool, env *environment, repl *caddy.Replacer) (*remoteBots, error) {
	rb := &remoteBots{
		base:        strings.TrimSuffix(repl.ReplaceKnown(cfg.URL, ""), "/"),
		knownFields: knownFields,
		env:         env,
	}
	if err := checkURL(rb.base); err != nil {
		return nil, err
	}
	var err error
	if rb.headers, err = headerValues(cfg.Headers, func(s string) string { return repl.ReplaceKnown(s, "") }); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	ttl, err := durationOrDefault("ttl", cfg.TTL, defaultBotsTTL)
	if err != nil {
		return nil, err
	}
	if cfg.MaxInFlight < 0 {
		return nil, errors.New("max_in_flight: must not be negative")
	}
	rb.slots = newCallSlots(cmp.Or(cfg.MaxInFlight, defaultMaxInFlight))
	// Idle connections to bots_url: at most as many as its calls in flight.
	settingsTransport := newAPITransport(http.ProxyFromEnvironment, nil)
	settingsTransport.MaxIdleConnsPerHost = min(settingsTransport.MaxIdleConnsPerHost, cap(rb.slots))
	rb.client = newHTTPClient(boundedTransport{slots: rb.slots, next: settingsTransport})
	if rb.tenant, err = newTenantPolicy(cfg, rb.slots); err != nil {
		return nil, err
	}
	if rb.timeout, err = durationOrDefault("timeout", cfg.Timeout, defaultBotsTimeout); err != nil {
		return nil, err
	}
	// The cache may be shared with other configs; answers of another API, asked
	// with other headers or prepared under another policy are not ours.
	source, _ := json.Marshal(struct {
		URL          string
		Headers      http.Header
		AllowPrivate bool
		MaxTimeout   time.Duration
	}{rb.base, rb.headers, cfg.AllowPrivate, rb.tenant.maxTimeout})
	rb.cachePrefix = "bot\x00" + string(source) + "\x00"
	rb.settings = remoteValue[*remoteBot]{env: env, background: env.ctx, slots: env.refreshSlots, ttl: ttl, fetch: rb.refresh, metric: "bots",
		failed: func(key string, err error) {
			id := strings.TrimPrefix(key, rb.cachePrefix)
			env.warn("bots_url:"+id, "fetching bot settings failed", zap.String("bot", id), zap.Error(err))
		}}
	return rb, nil
}

// lookup returns a bot's settings, or why there are none usable (remoteValue: only
// visitors of a bot with nothing cached wait for the backend).
func (rb *remoteBots) lookup(ctx context.Context, id string) (*botSettings, reason) {
	if !lookableBotID(id) {
		return nil, reasonUnknownBot
	}
	key := rb.cachePrefix + id
	rbot, err := rb.settings.get(ctx, key)
	if err != nil {
		return nil, reasonError
	}
	return rb.adopted(id, key, rbot).usable()
}

// adopted returns a cached bot prepared for this config. The cache outlives a reload,
// so a bot may have been prepared by the config that was replaced: it is prepared again
// from its settings (no fetch), so that its background work runs under this config
// rather than stopping with the old one. Of requests that find it together, the first
// to swap its bot in wins, and all get that bot.
func (rb *remoteBots) adopted(id, key string, rbot *remoteBot) *remoteBot {
	if rbot.bot == nil || rbot.env == rb.env {
		return rbot
	}
	fresh := rb.prepare(id, rbot.settings)
	return rb.settings.swap(key, fresh, remoteBotCost(fresh), rb.preparedHere)
}

// preparedHere reports whether a cached bot was prepared for this config.
func (rb *remoteBots) preparedHere(cached *remoteBot) bool { return cached.env == rb.env }

// usable is the bot's settings, or why there are none: the backend's answer was
// invalid, or it knows no such bot.
func (r *remoteBot) usable() (*botSettings, reason) {
	switch {
	case r.invalid != nil:
		return nil, reasonError
	case r.bot == nil:
		return nil, reasonUnknownBot
	}
	return r.bot, ""
}

// evicted ends the bot's background work and takes its breaker out of the
// breaker_open gauge: the bot has left the cache (evicted, replaced by changed
// settings, or the cache closed), and no request will find it again.
func (r *remoteBot) evicted() {
	r.gone.Store(true)
	if r.stop != nil {
		r.stop()
	}
	if r.bot != nil && r.bot.breaker != nil {
		r.bot.breaker.retire()
	}
}

// refresh asks the backend for a bot's settings (remoteValue.fetch). Unchanged
// settings keep the bot at hand, with its breaker and fetched whitelist.
func (rb *remoteBots) refresh(ctx context.Context, key string, last *remoteBot) (*remoteBot, int64, error) {
	id := strings.TrimPrefix(key, rb.cachePrefix)
	settings, status, err := rb.fetch(ctx, id)
	var rbot *remoteBot
	switch {
	case err != nil:
		return nil, 0, err
	case status == http.StatusNotFound:
		rbot = &remoteBot{}
	case last != nil && last.bot != nil && last.env == rb.env && !last.gone.Load() && bytes.Equal(last.settings, settings):
		rbot = last
	default:
		rbot = rb.prepare(id, settings)
		if rbot.invalid != nil {
			rb.env.warn("bots_url-invalid:"+id, "bot settings from bots_url are invalid; the bot falls back with reason error",
				zap.String("bot", id), zap.Error(rbot.invalid))
		}
	}
	return rbot, remoteBotCost(rbot), nil
}

// prepare makes a bot of its settings, its background work under a context of its
// own that its eviction ends.
func (rb *remoteBots) prepare(id string, settings []byte) *remoteBot {
	ctx, stop := context.WithCancel(rb.env.ctx)
	policy := *rb.tenant
	policy.background = ctx
	rbot := &remoteBot{settings: settings, env: rb.env, stop: stop}
	rbot.bot, rbot.invalid = parseBot(id, settings, rb.knownFields, &policy, rb.env)
	return rbot
}

// fetch returns the answer's body and status (200 or 404); anything else is an error.
func (rb *remoteBots) fetch(ctx context.Context, id string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, rb.timeout)
	defer cancel()
	reply, err := callAPI(ctx, rb.client, http.MethodGet, rb.base+"/"+url.PathEscape(id), rb.headers, nil, maxBotSettingsSize)
	if err != nil {
		return nil, 0, fmt.Errorf("calling bots_url: %w", err)
	}
	switch reply.code {
	case http.StatusOK:
		return reply.body, http.StatusOK, nil
	case http.StatusNotFound:
		return nil, http.StatusNotFound, nil
	}
	return nil, 0, fmt.Errorf("bots_url answered %d", reply.code)
}

func parseBot(id string, settings []byte, knownFields map[string]bool, policy *botPolicy, env *environment) (*botSettings, error) {
	var cfg Bot
	if err := json.Unmarshal(settings, &cfg); err != nil {
		return nil, fmt.Errorf("settings are not a bot's JSON form: %w", err)
	}
	return newBot(id, &cfg, knownFields, policy, env)
}

// lookableBotID keeps hostile ids away from the backend's URL: empty, overlong, with
// control characters, or a dot segment that a server would resolve.
func lookableBotID(id string) bool {
	if id == "" || len(id) > maxBotIDLength || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return false
		}
	}
	return true
}

// remoteBotCost is the heap, in bytes, that a cached answer holds: the overhead, the
// answer (kept to compare with the next one) and about as much again for the strings
// decoded from it, and each compiled entry of its manual whitelist.
func remoteBotCost(rbot *remoteBot) int64 {
	cost := int64(remoteBotOverhead + 2*len(rbot.settings))
	if rbot.bot != nil && rbot.bot.whitelist != nil {
		w := rbot.bot.whitelist
		cost += int64(whitelistEntryOverhead * (len(w.exact) + len(w.wildcards)))
	}
	return cost
}
