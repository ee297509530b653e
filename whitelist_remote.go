package customauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// WhitelistSource is an API that answers a bot's domain whitelist.
type WhitelistSource struct {
	// The API's absolute http or https URL, asked with GET.
	URL string `json:"url,omitempty"`

	// Headers sent with the request. Default: none.
	Headers map[string]string `json:"headers,omitempty"`

	// How often the list is fetched again; a remote bot's, at most once a minute.
	// Default: 5m.
	Refresh caddy.Duration `json:"refresh,omitempty"`
}

// defaultWhitelistTTL is how often a whitelist is fetched again by default.
const defaultWhitelistTTL = 5 * time.Minute

// minTenantRefresh is the shortest refresh of a remote bot's whitelist_url: a tenant's
// `refresh 1ns` would otherwise fetch the list on every request.
const minTenantRefresh = time.Minute

// remoteWhitelist is a bot's whitelist fetched from its whitelist_url, kept fresh as a
// remoteValue: fetched on first need, and again on the next need after it was
// evicted; once older than `refresh`, refreshed in the background while the last good
// list serves. A list never fetched allows nothing.
type remoteWhitelist struct {
	bot      string
	url      string
	headers  http.Header
	timeout  time.Duration
	client   *http.Client
	env      *environment
	cacheKey string
	list     remoteValue[*whitelist]
}

const (
	// maxWhitelistSize bounds a whitelist answer in bytes and maxWhitelistEntries in
	// entries. A list names the sites a bot's widget is embedded on, hundreds at the
	// very most; with both bounds one list holds at most about 2.4 MB of heap (see
	// whitelistCost), so one tenant's list cannot take much of a default cache.
	maxWhitelistSize    = 1 << 20
	maxWhitelistEntries = 10_000
)

func newRemoteWhitelist(botID string, cfg *WhitelistSource, timeout time.Duration, expand func(string) string, policy *botPolicy, env *environment) (*remoteWhitelist, error) {
	rw := &remoteWhitelist{bot: botID, url: expand(cfg.URL), timeout: timeout, client: policy.client, env: env}
	rw.list = remoteValue[*whitelist]{env: env, background: policy.backgroundOf(env), slots: policy.refreshSlotsOf(env), fetch: rw.update, metric: "whitelist",
		failed: func(_ string, err error) {
			if errors.Is(err, errTooLargeForCache) {
				return // warned about as such
			}
			env.metrics.observeWhitelistRefreshError(botID)
			env.warn("whitelist_url:"+botID, "fetching whitelist failed; keeping the last good list",
				zap.String("bot", botID), zap.Error(err))
		}}
	if err := checkURL(rw.url); err != nil {
		return nil, err
	}
	var err error
	if rw.headers, err = headerValues(cfg.Headers, expand); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if rw.list.ttl, err = durationOrDefault("refresh", cfg.Refresh, defaultWhitelistTTL); err != nil {
		return nil, err
	}
	if policy.tenant {
		rw.list.ttl = max(rw.list.ttl, minTenantRefresh)
	}
	// The bot, and the client it is fetched with, are part of the key: another bot
	// naming the same URL gets its own fetch, so no tenant sees a list fetched for
	// someone else or through another client. The same bot with the same source in
	// the next config finds its list.
	source, _ := json.Marshal(struct {
		BotID, URL string
		Headers    http.Header
		Scope      string
	}{botID, rw.url, rw.headers, policy.fetchScope()})
	rw.cacheKey = "whitelist\x00" + string(source)
	return rw, nil
}

func (rw *remoteWhitelist) allows(ctx context.Context, origin string) bool {
	list, _ := rw.list.get(ctx, rw.cacheKey)
	return list != nil && list.allows(origin)
}

// errTooLargeForCache is a list that cache_size cannot hold.
var errTooLargeForCache = errors.New("the whitelist is too large for cache_size")

// update fetches the list (remoteValue.fetch). A list too large for the whole cache
// serves only the requests that waited for it, and holds back the next fetch like a
// failure.
func (rw *remoteWhitelist) update(ctx context.Context, _ string, _ *whitelist) (*whitelist, int64, error) {
	entries, err := rw.fetch(ctx)
	if err != nil {
		return nil, 0, err
	}
	list, err := compileWhitelist(entries)
	if err != nil {
		rw.env.warn("whitelist_url-entries:"+rw.bot, "whitelist has invalid entries; they are ignored",
			zap.String("bot", rw.bot), zap.Error(err))
	}
	cost := whitelistCost(entries)
	if !rw.env.caches.fits(cost) {
		rw.env.warn("whitelist_url-size:"+rw.bot, "whitelist is too large for cache_size; it is fetched again at most every few seconds",
			zap.String("bot", rw.bot), zap.Int("entries", len(entries)), zap.Int64("bytes", cost))
		return list, cost, errTooLargeForCache
	}
	return list, cost, nil
}

func (rw *remoteWhitelist) fetch(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, rw.timeout)
	defer cancel()
	answer, err := callAPI(ctx, rw.client, http.MethodGet, rw.url, rw.headers, nil, maxWhitelistSize)
	if err != nil {
		return nil, fmt.Errorf("calling whitelist_url: %w", err)
	}
	if answer.code < 200 || answer.code > 299 {
		return nil, fmt.Errorf("whitelist API answered %d", answer.code)
	}
	entries, err := parseWhitelistAnswer(answer.body)
	if err != nil {
		return nil, err
	}
	if len(entries) > maxWhitelistEntries {
		return nil, fmt.Errorf("whitelist answer has over %d entries", maxWhitelistEntries)
	}
	return entries, nil
}

// botWhitelists compiles a bot's manual whitelist, with placeholders expanded, and
// prepares the fetching of its whitelist_url.
func botWhitelists(botID string, manual []string, source *WhitelistSource, timeout time.Duration, policy *botPolicy, env *environment) (*whitelist, *remoteWhitelist, error) {
	var list *whitelist
	if len(manual) > 0 {
		entries := make([]string, len(manual))
		for i, e := range manual {
			entries[i] = policy.expand(e)
		}
		var err error
		if list, err = compileWhitelist(entries); err != nil {
			return nil, nil, fmt.Errorf("whitelist: %w", err)
		}
	}
	if source == nil {
		return list, nil, nil
	}
	remote, err := newRemoteWhitelist(botID, source, timeout, policy.expand, policy, env)
	if err != nil {
		return nil, nil, fmt.Errorf("whitelist_url: %w", err)
	}
	return list, remote, nil
}
