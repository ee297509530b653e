package customauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// BotsSource is the chat backend's API that answers the settings of bots that are not
// listed in the config: `GET <url>/<url-escaped bot id>` answers a bot's JSON form,
// 404 an unknown bot.
type BotsSource struct {
	// The API's base URL, an absolute http or https URL.
	URL string `json:"url,omitempty"`

	// Headers sent with each request, e.g. an API key. Default: none.
	Headers map[string]string `json:"headers,omitempty"`

	// How long an answer is used before the bot's settings are asked again.
	// Default: 1m.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Cap on a remote bot's `timeout`: however long a tenant sets it, a visitor and
	// a connection never wait longer for its identity or whitelist API.
	// Default: 10s.
	MaxTimeout caddy.Duration `json:"max_timeout,omitempty"`

	// Lets a remote bot's `auth_url` and `whitelist_url` reach loopback, private
	// (RFC 1918, IPv6 ULA), link-local, unspecified, multicast and other
	// special-purpose addresses, Caddy's admin endpoint included. Only for a chat
	// backend whose every tenant is trusted, or for tests. Default: false, such
	// connections are refused.
	AllowPrivate bool `json:"allow_private,omitempty"`
}

const (
	defaultBotsTTL = time.Minute
	// maxBotSettingsSize bounds a bot settings answer.
	maxBotSettingsSize = 64 << 10
	// maxBotIDLength bounds a bot id that may be looked up.
	maxBotIDLength = 256
	// botsRetryDelay is how long an unreachable backend is not asked again while the
	// last known settings serve.
	botsRetryDelay = 5 * time.Second
)

// remoteBots fetches and caches bot settings from bots_url.
type remoteBots struct {
	base        string
	headers     http.Header
	ttl         time.Duration
	knownFields map[string]bool
	// tenant is what the bots may do: their settings are written by tenants.
	tenant      *botPolicy
	env         *environment
	caches      *caches
	cachePrefix string
}

// remoteBot is what bots_url said of one bot, as cached.
type remoteBot struct {
	bot      *botSettings // nil when unknown or invalid
	settings []byte       // the answer, to keep the bot (and its fetched whitelist) when unchanged
	invalid  error        // why the answer could not be used
}

func newRemoteBots(cfg *BotsSource, knownFields map[string]bool, env *environment, caches *caches, repl *caddy.Replacer) (*remoteBots, error) {
	rb := &remoteBots{
		base:        strings.TrimSuffix(repl.ReplaceKnown(cfg.URL, ""), "/"),
		knownFields: knownFields,
		env:         env,
		caches:      caches,
	}
	if err := checkURL(rb.base); err != nil {
		return nil, err
	}
	var err error
	if rb.headers, err = headerValues(cfg.Headers, func(s string) string { return repl.ReplaceKnown(s, "") }); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if rb.ttl, err = durationOrDefault("ttl", cfg.TTL, defaultBotsTTL); err != nil {
		return nil, err
	}
	if rb.tenant, err = newTenantPolicy(cfg); err != nil {
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
	return rb, nil
}

// lookup returns a bot's settings, or why there are none usable.
func (rb *remoteBots) lookup(ctx context.Context, id string) (*botSettings, reason) {
	if !lookableBotID(id) {
		return nil, reasonUnknownBot
	}
	key := rb.cachePrefix + id
	now := rb.env.now()
	entry, cached := rb.caches.entry(key)
	if cached && now.Before(entry.expires) {
		rb.env.metrics.observeCache("bots", true)
		return entry.value.(*remoteBot).verdict()
	}
	rb.env.metrics.observeCache("bots", false)
	v, _, _ := rb.caches.flights.Do(key, func() (any, error) {
		return rb.refresh(ctx, id, key, entry), nil
	})
	return v.(*remoteBot).verdict()
}

func (r *remoteBot) verdict() (*botSettings, reason) {
	switch {
	case r.invalid != nil:
		return nil, reasonError
	case r.bot == nil:
		return nil, reasonUnknownBot
	}
	return r.bot, ""
}

// refresh asks the backend for a bot's settings. While the backend cannot be reached,
// the last known settings keep serving.
func (rb *remoteBots) refresh(ctx context.Context, id, key string, last *cacheEntry) *remoteBot {
	now := rb.env.now()
	settings, status, err := rb.fetch(context.WithoutCancel(ctx), id)
	if err != nil {
		rb.env.warn("bots_url:"+id, "fetching bot settings failed", zap.String("bot", id), zap.Error(err))
		if last != nil {
			rb.caches.store(key, last.value, last.cost, now, now.Add(botsRetryDelay), 0)
			return last.value.(*remoteBot)
		}
		return &remoteBot{invalid: err}
	}

	var answer *remoteBot
	switch {
	case status == http.StatusNotFound:
		answer = &remoteBot{}
	case last != nil && last.value.(*remoteBot).bot != nil && bytes.Equal(last.value.(*remoteBot).settings, settings):
		answer = last.value.(*remoteBot)
	default:
		answer = &remoteBot{settings: settings}
		answer.bot, answer.invalid = rb.parse(id, settings)
		if answer.invalid != nil {
			rb.env.warn("bots_url-invalid:"+id, "bot settings from bots_url are invalid; the bot falls back with reason error",
				zap.String("bot", id), zap.Error(answer.invalid))
		}
	}
	rb.caches.store(key, answer, int64(1024+4*len(settings)), now, now.Add(rb.ttl), 0)
	return answer
}

// fetch returns the answer's body and status (200 or 404); anything else is an error.
func (rb *remoteBots) fetch(ctx context.Context, id string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rb.base+"/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, 0, err
	}
	for name, values := range rb.headers {
		req.Header[name] = values
	}
	req.Header.Set("Accept", "application/json")
	resp, err := rb.env.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("calling bots_url: %w", redactURLError(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, http.StatusNotFound, nil
	default:
		return nil, 0, fmt.Errorf("bots_url answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBotSettingsSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading bots_url answer: %w", err)
	}
	return body, http.StatusOK, nil
}

// parse checks a bot settings answer like a bot block of the config, and bounds it as
// a tenant's (newTenantPolicy).
func (rb *remoteBots) parse(id string, settings []byte) (*botSettings, error) {
	if len(settings) > maxBotSettingsSize {
		return nil, fmt.Errorf("settings are over %d bytes", maxBotSettingsSize)
	}
	var cfg Bot
	if err := json.Unmarshal(settings, &cfg); err != nil {
		return nil, fmt.Errorf("settings are not a bot's JSON form: %w", err)
	}
	return newBot(id, &cfg, rb.knownFields, rb.tenant, rb.env)
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
