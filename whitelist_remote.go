package customauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// remoteWhitelist is a bot's whitelist fetched from its whitelist_url. The list lives
// in the handler's cache, where it counts toward cache_size like everything else the
// handler remembers. It is fetched on first need, and again on the next need after it
// was evicted; once older than `refresh`, the next request starts a refresh in the
// background and is answered from the last good list, which keeps serving while
// refreshes fail. A list never fetched allows nothing.
type remoteWhitelist struct {
	bot      string
	url      string
	headers  http.Header
	refresh  time.Duration
	timeout  time.Duration
	client   *http.Client
	env      *environment
	cacheKey string

	refreshing atomic.Bool // a background refresh is under way
	// retryAt holds back fetches after a failure, so an API that is down is not
	// asked again by every request.
	retryAt atomic.Int64
}

const (
	// maxWhitelistSize bounds a whitelist answer in bytes and maxWhitelistEntries in
	// entries. A list names the sites a bot's widget is embedded on, hundreds at the
	// very most; with both bounds one list holds at most about 2.4 MB of heap (see
	// whitelistCost), so one tenant's list cannot take much of a default cache.
	maxWhitelistSize    = 1 << 20
	maxWhitelistEntries = 10_000
)

// whitelistRetryDelay is how long a failed fetch holds back the next one.
const whitelistRetryDelay = 5 * time.Second

func newRemoteWhitelist(botID string, cfg *WhitelistSource, timeout time.Duration, expand func(string) string, policy *botPolicy, env *environment) (*remoteWhitelist, error) {
	rw := &remoteWhitelist{bot: botID, url: expand(cfg.URL), timeout: timeout, client: policy.client, env: env}
	if err := checkURL(rw.url); err != nil {
		return nil, err
	}
	var err error
	if rw.headers, err = headerValues(cfg.Headers, expand); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if rw.refresh, err = durationOrDefault("refresh", cfg.Refresh, defaultWhitelistTTL); err != nil {
		return nil, err
	}
	// The bot, and whether a tenant wrote it, are part of the key: another bot naming
	// the same URL gets its own fetch, so no tenant sees a list fetched for someone
	// else or through the operator's unrestricted client. The same bot with the same
	// source in the next config finds its list.
	source, _ := json.Marshal(struct {
		Bot, URL string
		Headers  http.Header
		Tenant   bool
	}{botID, rw.url, rw.headers, policy.tenant})
	rw.cacheKey = "whitelist\x00" + string(source)
	return rw, nil
}

func (rw *remoteWhitelist) allows(ctx context.Context, origin string) bool {
	list, fetchedAt, ok := rw.cached()
	rw.env.metrics.observeCache("whitelist", ok)
	if !ok {
		if list = rw.fetchFirst(ctx); list == nil {
			return false
		}
	} else if rw.env.now().Sub(fetchedAt) >= rw.refresh {
		rw.refreshInBackground()
	}
	return list.allows(origin)
}

// cached returns the list in the cache and when it was fetched.
func (rw *remoteWhitelist) cached() (*whitelist, time.Time, bool) {
	e, ok := rw.env.caches.entry(rw.cacheKey)
	if !ok {
		return nil, time.Time{}, false
	}
	return e.value.(*whitelist), e.stored, true
}

// fetchFirst fetches the list when the cache has none; concurrent requests wait for
// the same fetch, and a visitor who leaves stops waiting at once.
func (rw *remoteWhitelist) fetchFirst(ctx context.Context) *whitelist {
	if rw.heldBack() {
		return nil
	}
	list, _ := awaitFlight(ctx, &rw.env.caches.flights, rw.cacheKey, rw.fetchUnlessCached)
	return list
}

func (rw *remoteWhitelist) refreshInBackground() {
	if !rw.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer rw.refreshing.Store(false)
		// Joins a fetch of the same list that requests may be waiting for.
		rw.env.caches.flights.Do(rw.cacheKey, func() (any, error) {
			return rw.fetchUnlessCached(rw.env.ctx), nil
		})
	}()
}

// fetchUnlessCached fetches the list unless a fetch that just ended left a fresh one
// in the cache, or failed and holds back the next.
func (rw *remoteWhitelist) fetchUnlessCached(ctx context.Context) *whitelist {
	list, fetchedAt, ok := rw.cached()
	if ok && rw.env.now().Sub(fetchedAt) < rw.refresh {
		return list
	}
	if rw.heldBack() {
		return list
	}
	if fetched := rw.update(ctx); fetched != nil {
		return fetched
	}
	return list
}

func (rw *remoteWhitelist) heldBack() bool {
	return rw.env.now().UnixNano() < rw.retryAt.Load()
}

func (rw *remoteWhitelist) holdBack() {
	rw.retryAt.Store(rw.env.now().Add(whitelistRetryDelay).UnixNano())
}

// update fetches the list and, if it is good, caches it. It returns the list, or nil
// when the fetch failed. A list too large for the whole cache serves only the
// requests that waited for it, and holds back the next fetch like a failure.
func (rw *remoteWhitelist) update(ctx context.Context) *whitelist {
	entries, err := rw.fetch(ctx)
	if err != nil {
		if rw.env.ctx.Err() != nil || errors.Is(err, errAllSlotsBusy) {
			return nil // the config was unloaded, or the API was not asked
		}
		rw.holdBack()
		rw.env.metrics.observeWhitelistRefreshError(rw.bot)
		rw.env.warn("whitelist_url:"+rw.bot, "fetching whitelist failed; keeping the last good list",
			zap.String("bot", rw.bot), zap.Error(err))
		return nil
	}
	list, err := compileWhitelist(entries)
	if err != nil {
		rw.env.warn("whitelist_url-entries:"+rw.bot, "whitelist has invalid entries; they are ignored",
			zap.String("bot", rw.bot), zap.Error(err))
	}
	cost := whitelistCost(entries)
	if !rw.env.caches.fits(cost) {
		rw.holdBack()
		rw.env.warn("whitelist_url-size:"+rw.bot, "whitelist is too large for cache_size; it is fetched again at most every few seconds",
			zap.String("bot", rw.bot), zap.Int("entries", len(entries)), zap.Int64("bytes", cost))
		return list
	}
	now := rw.env.now()
	rw.env.caches.store(rw.cacheKey, list, cost, now, now.Add(rw.refresh), 0)
	return list
}

func (rw *remoteWhitelist) fetch(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, rw.timeout)
	defer cancel()
	answer, err := callAPI(ctx, rw.client, http.MethodGet, rw.url, rw.headers, nil, maxWhitelistSize)
	if err != nil {
		return nil, fmt.Errorf("calling whitelist_url: %w", err)
	}
	if answer.status < 200 || answer.status > 299 {
		return nil, fmt.Errorf("whitelist API answered %d", answer.status)
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

// The heap a cached list holds, measured by TestWhitelistCostMatchesHeap: per entry,
// its map slot, rule and string header (the text comes on top, since the compiled host
// keeps the entry's string); per list, the two maps, the cache entry and ristretto's
// bookkeeping.
const (
	whitelistEntryOverhead = 144
	whitelistOverhead      = 768
)

// whitelistCost is the heap, in bytes, that the list compiled from entries holds. It
// errs on the high side (duplicates and invalid entries count too), so that the heap
// stays within cache_size.
func whitelistCost(entries []string) int64 {
	cost := int64(whitelistOverhead)
	for _, e := range entries {
		cost += whitelistEntryOverhead + int64(len(e))
	}
	return cost
}
