package customauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dgraph-io/ristretto/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// caches holds everything the handler remembers between requests: verified identities,
// rejections, bot settings from bots_url and fetched whitelists, in one ristretto cache
// bounded by cache_size. Each entry's cost is the heap it holds, so eviction bounds
// them all; what was evicted is asked again on next need. It lives in a UsagePool, so
// a config reload keeps it; it is closed when the last config that uses it goes away.
type caches struct {
	items   *ristretto.Cache[string, *cacheEntry]
	flights singleflight.Group
	poolKey string
}

// cacheEntry is a cached value, when it was stored and when it stops being served.
// Both are checked here, against the handler's clock; ristretto's own TTL frees the
// memory.
type cacheEntry struct {
	// value is what the entry holds, unless it is a verdict: those are kept in their
	// own field, so that no interface boxes them.
	value   any
	verdict verdict
	cost    int64
	stored  time.Time
	expires time.Time
}

var cachePool = caddy.NewUsagePool()

// loadCaches returns the caches of a handler. A handler with the same bots (listed
// ids and bots_url) and the same cache_size in the next config, after a reload, finds
// the caches it had; an unrelated handler has caches of its own, so one handler's
// visitors never take another's cache_size. Each call must be matched by a release.
func loadCaches(h *Handler, size int64) (*caches, error) {
	key := cachePoolKey(h, size)
	v, loaded, err := cachePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newCaches(key, size)
	})
	if err != nil {
		return nil, fmt.Errorf("cache_size: %w", err)
	}
	if loaded {
		h.logger.Debug("reusing caches", zap.Int64("cache_size", size))
	}
	return v.(*caches), nil
}

// cachePoolKey names what a handler's caches are for: its size and its bots.
func cachePoolKey(h *Handler, size int64) string {
	var botsURL string
	if h.BotsURL != nil {
		botsURL = h.BotsURL.URL
	}
	shape, _ := json.Marshal(struct {
		Size    int64
		Bots    []string
		BotsURL string
	}{size, slices.Sorted(maps.Keys(h.Bots)), botsURL})
	return "custom_auth/" + string(shape)
}

// averageEntryCost guesses an entry's size to size ristretto's admission counters.
const averageEntryCost = 1 << 10

func newCaches(poolKey string, size int64) (*caches, error) {
	counters := 10 * size / averageEntryCost
	items, err := ristretto.NewCache(&ristretto.Config[string, *cacheEntry]{
		NumCounters: max(counters, 1000),
		MaxCost:     size,
		BufferItems: 64,
		OnExit:      leftCache,
	})
	if err != nil {
		return nil, err
	}
	return &caches{items: items, poolKey: poolKey}, nil
}

// evictable is a cached value that must know when it leaves the cache: evicted is
// called once, whatever the reason (evicted for room or age, replaced, deleted,
// refused on admission, or the cache closed), so that it can end what it holds, such
// as a remote bot's background work and its share of a gauge.
type evictable interface{ evicted() }

// leftCache is ristretto's OnExit, called once for each value that leaves the cache;
// nil for a key that was not there.
func leftCache(e *cacheEntry) {
	if e == nil {
		return
	}
	if v, ok := e.value.(evictable); ok {
		v.evicted()
	}
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
	e := &cacheEntry{value: value, cost: cost, stored: stored, expires: expires}
	if !c.items.SetWithTTL(key, e, cost, keepFor) {
		leftCache(e) // dropped unseen: it leaves as it came
		return
	}
	c.items.Wait()
}

// storeVerdict caches a verdict until expires; ristretto frees it after keepFor.
func (c *caches) storeVerdict(key string, v verdict, stored, expires time.Time, keepFor time.Duration) {
	cost := verdictCost(v)
	if c.items.SetWithTTL(key, &cacheEntry{verdict: v, cost: cost, stored: stored, expires: expires}, cost, keepFor) {
		c.items.Wait()
	}
}

// fits reports whether a value of this cost can be cached at all: ristretto refuses
// one larger than the whole cache.
func (c *caches) fits(cost int64) bool {
	return cost <= c.items.MaxCost()
}

// cachedIdentifier answers from the cache, and makes one API call for all concurrent
// requests with the same token and settings.
type cachedIdentifier struct {
	caches  *caches
	next    identifier
	metrics *metrics
	now     func() time.Time
	shared  *sharedCache // the fleet's cache behind the local one; nil: none (shared_cache.go)
	marks   *purgeMarks  // purges: verdicts not to serve (purge.go)
}

func (h *Handler) cachedIdentities(next identifier) identifier {
	return &cachedIdentifier{caches: h.caches, next: next, metrics: h.env.metrics, now: h.now, shared: h.shared, marks: h.marks}
}

func (ci *cachedIdentifier) identify(ctx context.Context, b *botSettings, req identityRequest) lookupResult {
	key := identityKey(b, req)
	caching := b.cacheTTL > 0 || b.negativeTTL > 0
	if caching {
		if res, ok := ci.cached(key, b, req); ok {
			ci.metrics.observeCache("identity", true)
			return res
		}
		ci.metrics.observeCache("identity", false)
	}
	// Concurrent requests for one key make one call, whatever the TTLs.
	res, ok := awaitFlight(ctx, &ci.caches.flights, key, func(ctx context.Context) lookupResult {
		if caching {
			if res, ok := ci.sharedVerdict(ctx, key, b, req); ok {
				return res
			}
		}
		// A verdict is as old as its question: one asked before a purge and
		// answered after it is covered by the purge.
		asked := ci.now()
		res := ci.next.identify(ctx, b, req)
		if ttl := cacheTTL(b, res); ttl > 0 {
			v := encodeVerdict(res, asked)
			ci.caches.storeVerdict(key, v, asked, asked.Add(ttl), ttl)
			ci.shareVerdict(ctx, key, v, ttl)
		}
		return res
	})
	if !ok {
		return failure(fmt.Errorf("visitor left: %w", context.Cause(ctx)), false)
	}
	return res
}

// awaitFlight makes one call of fn for all concurrent requests with the same key and
// returns its result; ok is false when ctx ends first. The call serves every waiting
// request, so it runs with a context that no visitor leaving cancels (its own timeout
// bounds it), while a visitor who leaves stops waiting at once.
func awaitFlight[T any](ctx context.Context, flights *singleflight.Group, key string, fn func(context.Context) T) (T, bool) {
	detached := context.WithoutCancel(ctx)
	flight := flights.DoChan(key, func() (any, error) { return fn(detached), nil })
	select {
	case done := <-flight:
		return done.Val.(T), true
	case <-ctx.Done():
		var zero T
		return zero, false
	}
}

// cached returns a verdict that is still young enough for the bot's settings now
// running, and that no purge covers: a reload that shortens a TTL applies to verdicts
// cached before it.
func (ci *cachedIdentifier) cached(key string, b *botSettings, req identityRequest) (lookupResult, bool) {
	e, ok := ci.caches.entry(key)
	if !ok {
		return lookupResult{}, false
	}
	res := e.verdict.lookupResult()
	ttl := cacheTTL(b, res)
	if ci.now().Sub(e.stored) >= ttl || ci.marks.hides(req.markedBot(b), req.token, res, e.stored, ttl) {
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

// verdictCost is the heap a cached verdict holds: its block, rounded up as the
// allocator rounds it, and per entry the cacheEntry and ristretto's bookkeeping beyond
// the storeItem it charges itself (a slot of its store's map, its policy's cost map and
// its expiry bucket). TestCacheStaysWithinCacheSize measures it with the real handler.
func verdictCost(v verdict) int64 {
	const perEntry = 96 + 128 // the cacheEntry; ristretto's maps at their load factor
	return allocSize(cap(v)) + perEntry
}

// allocSize is at least what the Go allocator gives for n bytes: its size classes are
// 16 bytes apart up to 256, at most 64 up to 1 KiB, at most 256 up to 8 KiB; beyond,
// whole pages.
func allocSize(n int) int64 {
	step := 8192
	switch {
	case n <= 256:
		step = 16
	case n <= 1024:
		step = 64
	case n <= 8192:
		step = 256
	}
	return int64((n + step - 1) / step * step)
}
