package customauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dgraph-io/ristretto/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// caches holds everything the handler remembers between requests: verified identities,
// rejections and bot settings from bots_url, in one ristretto cache bounded by
// cache_size. It lives in a UsagePool, so a config reload keeps it; it is closed when
// the last config that uses it goes away.
type caches struct {
	items   *ristretto.Cache[string, *cacheEntry]
	flights singleflight.Group
	poolKey string
}

// cacheEntry is a cached value, when it was stored and when it stops being served.
// Both are checked here, against the handler's clock; ristretto's own TTL frees the
// memory.
type cacheEntry struct {
	value   any
	cost    int64
	stored  time.Time
	expires time.Time
}

var cachePool = caddy.NewUsagePool()

// loadCaches returns the caches of the given size, shared with any config that uses the
// same size; each call must be matched by a release.
func loadCaches(size int64, logger *zap.Logger) (*caches, error) {
	key := fmt.Sprintf("custom_auth/%d", size)
	v, loaded, err := cachePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newCaches(key, size)
	})
	if err != nil {
		return nil, fmt.Errorf("cache_size: %w", err)
	}
	if loaded {
		logger.Debug("reusing caches", zap.Int64("cache_size", size))
	}
	return v.(*caches), nil
}

// averageEntryCost guesses an entry's size to size ristretto's admission counters.
const averageEntryCost = 1 << 10

func newCaches(poolKey string, size int64) (*caches, error) {
	counters := 10 * size / averageEntryCost
	items, err := ristretto.NewCache(&ristretto.Config[string, *cacheEntry]{
		NumCounters: max(counters, 1000),
		MaxCost:     size,
		BufferItems: 64,
	})
	if err != nil {
		return nil, err
	}
	return &caches{items: items, poolKey: poolKey}, nil
}

// Destruct closes the cache once no config uses it.
func (c *caches) Destruct() error {
	c.items.Close()
	return nil
}

func (c *caches) release() error {
	_, err := cachePool.Delete(c.poolKey)
	return err
}

// entry returns a cached entry, expired or not: an expired one may still serve while
// its source cannot be reached.
func (c *caches) entry(key string) (*cacheEntry, bool) {
	return c.items.Get(key)
}

// store caches a value until expires, with its cost in bytes; ristretto frees it after
// keepFor (0: only when evicted). It waits until the value is visible, so that a
// request right after this one finds it.
func (c *caches) store(key string, value any, cost int64, stored, expires time.Time, keepFor time.Duration) {
	if c.items.SetWithTTL(key, &cacheEntry{value: value, cost: cost, stored: stored, expires: expires}, cost, keepFor) {
		c.items.Wait()
	}
}

// cachedIdentifier answers from the cache, and makes one API call for all concurrent
// requests with the same token and settings.
type cachedIdentifier struct {
	caches  *caches
	next    identifier
	metrics *metrics
	now     func() time.Time
}

func (h *Handler) cachedIdentities(next identifier) identifier {
	return &cachedIdentifier{caches: h.caches, next: next, metrics: h.env.metrics, now: h.now}
}

func (ci *cachedIdentifier) identify(ctx context.Context, b *botSettings, req identityRequest) lookupResult {
	key := identityKey(b, req)
	caching := b.cacheTTL > 0 || b.negativeTTL > 0
	if caching {
		if res, ok := ci.cached(key, b); ok {
			ci.metrics.observeCache("identity", true)
			return res
		}
		ci.metrics.observeCache("identity", false)
	}
	// Concurrent requests for one key make one call, whatever the TTLs.
	flight := ci.caches.flights.DoChan(key, func() (any, error) {
		// The call serves every waiting request, so one visitor leaving must not
		// cancel it; the bot's timeout still bounds it.
		res := ci.identifierOf(b).identify(context.WithoutCancel(ctx), b, req)
		if ttl := cacheTTL(b, res); ttl > 0 {
			now := ci.now()
			ci.caches.store(key, res, resultCost(res), now, now.Add(ttl), ttl)
		}
		return res, nil
	})
	select {
	case done := <-flight:
		return done.Val.(lookupResult)
	case <-ctx.Done():
		// A visitor who left stops waiting at once; the call goes on for the others.
		return failure(fmt.Errorf("visitor left: %w", context.Cause(ctx)), false)
	}
}

// identifierOf is what verifies the bot's tokens: its own verify_jwt, or the identity
// API.
func (ci *cachedIdentifier) identifierOf(b *botSettings) identifier {
	if b.jwt != nil {
		return b.jwt
	}
	return ci.next
}

// cached returns a verdict that is still young enough for the bot's settings now
// running: a reload that shortens a TTL applies to verdicts cached before it.
func (ci *cachedIdentifier) cached(key string, b *botSettings) (lookupResult, bool) {
	e, ok := ci.caches.entry(key)
	if !ok {
		return lookupResult{}, false
	}
	res := e.value.(lookupResult)
	if ci.now().Sub(e.stored) >= cacheTTL(b, res) {
		return lookupResult{}, false
	}
	res.cacheHit = true
	res.apiTime = 0
	return res, true
}

// cacheTTL is how long a verdict may be served: verified identities for cache_ttl,
// rejections for negative_ttl, errors never, capped by the answer's Cache-Control.
func cacheTTL(b *botSettings, res lookupResult) time.Duration {
	var ttl time.Duration
	switch res.result {
	case resultVerified:
		ttl = b.cacheTTL
	case resultRejected:
		ttl = b.negativeTTL
	default:
		return 0
	}
	if res.noStore {
		return 0
	}
	if res.maxAge >= 0 && res.maxAge < ttl {
		ttl = res.maxAge
	}
	return ttl
}

// identityKey hashes everything that decides a verdict: the bot, its settings, the
// token and the forwarded fields. The token itself is never kept.
func identityKey(b *botSettings, req identityRequest) string {
	h := sha256.New()
	h.Write([]byte("identity\x00"))
	h.Write([]byte(b.id))
	h.Write([]byte{0})
	h.Write(b.settingsKey[:])
	h.Write([]byte(req.token))
	for _, f := range req.fields {
		if b.forward[f.name] {
			h.Write([]byte{0})
			h.Write([]byte(f.name))
			h.Write([]byte{0})
			h.Write([]byte(f.value))
		}
	}
	var sum [sha256.Size]byte
	return string(h.Sum(sum[:0]))
}

// resultCost estimates the bytes a cached verdict holds: the entry, the result and
// ristretto's bookkeeping, and the contact's raw JSON and encoded headers. It errs on
// the high side, so that the heap stays within cache_size.
func resultCost(res lookupResult) int64 {
	const overhead = 320
	if res.identity == nil {
		return overhead
	}
	id := res.identity
	cost := int64(overhead + len(id.raw) + len(id.primary))
	for _, h := range id.headers {
		cost += int64(len(h.value)) + 48 // slice element and string header
	}
	return cost
}
