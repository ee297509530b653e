package customauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// caches holds everything the handler remembers between requests, within the one
// cache_size: verified identities and rejections as blocks outside the Go heap
// (blocks.go), and bot settings from bots_url and fetched whitelists, which hold
// pointers, on the heap (values.go), each charged at the memory it really occupies.
// What was evicted is asked again on next need. It lives in a UsagePool, so a config
// reload keeps it; it is closed when the last config that uses it goes away.
type caches struct {
	acct    *accountant
	blocks  *blockStore
	flights singleflight.Group
	poolKey string
}

// cacheEntry is a cached heap value, with when it was stored and when it stops being
// served; both are checked by its reader, against the handler's clock.
type cacheEntry struct {
	value   any
	cost    int64
	stored  time.Time
	expires time.Time
}

var cachePool = caddy.NewUsagePool()

// cacheOwner names whose caches they are: a handler's listed bot ids and bots_url.
type cacheOwner struct {
	Bots    []string
	BotsURL string
}

// loadCaches returns the caches of a handler. A handler with the same bots (listed
// ids and bots_url) and the same cache_size in the next config, after a reload, finds
// the caches it had; an unrelated handler has caches of its own, so one handler's
// visitors never take another's cache_size. Each call must be matched by a release.
func loadCaches(owner cacheOwner, size int64, logger *zap.Logger) (*caches, error) {
	key := cachePoolKey(owner, size)
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

// cachePoolKey names what a handler's caches are for: its size and its bots.
func cachePoolKey(owner cacheOwner, size int64) string {
	shape, _ := json.Marshal(struct {
		Size int64
		cacheOwner
	}{size, owner})
	return "custom_auth/" + string(shape)
}

func newCaches(poolKey string, size int64) (*caches, error) {
	acct := &accountant{size: size}
	acct.values = heapValues{acct: acct, items: map[string]*heapValue{}}
	blocks, err := newBlockStore(acct)
	if err != nil {
		return nil, fmt.Errorf("mapping %d bytes: %w", size, err)
	}
	acct.blocks = blocks
	return &caches{acct: acct, blocks: blocks, poolKey: poolKey}, nil
}

// Destruct closes the cache once no config uses it: its verdicts' memory goes back
// to the kernel, and every heap value is told it was evicted.
func (c *caches) Destruct() error {
	err := c.blocks.close()
	c.acct.values.clear()
	return err
}

func (c *caches) release() error {
	_, err := cachePool.Delete(c.poolKey)
	return err
}

// entry returns a cached heap value, expired or not: an expired one may still serve
// while its source cannot be reached.
func (c *caches) entry(key string) (*cacheEntry, bool) {
	return c.acct.values.get(key)
}

// store caches a heap value with its cost in bytes until expires; it is visible to
// the next request at once. keepFor is not used: memory is taken back by eviction.
func (c *caches) store(key string, value any, cost int64, stored, expires time.Time, keepFor time.Duration) {
	c.acct.values.set(key, &cacheEntry{value: value, cost: cost, stored: stored, expires: expires})
}

// verdict returns a copy of the verdict cached under key, young or old: its reader
// checks its age, which the block carries (verdict.stored).
func (c *caches) verdict(key []byte) (storedVerdict, bool) {
	v, ok := c.blocks.get(key)
	return storedVerdict(v), ok
}

// storeVerdict caches a verdict. It stays until the store's first-in, first-out
// eviction reaches it, so stored, expires and keepFor are not kept apart: the block
// carries when it was stored, and its reader checks its age against the bot's TTL.
func (c *caches) storeVerdict(key string, v storedVerdict, stored, expires time.Time, keepFor time.Duration) {
	c.blocks.set(key, v)
}

// remove deletes an entry, verdict or heap value, and reports whether there was one.
func (c *caches) remove(key string) bool {
	return c.blocks.remove(key) || c.acct.values.remove(key)
}

// fits reports whether a heap value of this cost can be cached at all: at most the
// budget that the verdicts' index leaves.
func (c *caches) fits(cost int64) bool {
	return cost <= c.acct.size-int64(planBlocks(c.acct.size).indexBytes())
}

// used is how much of cache_size the caches hold.
func (c *caches) used() int64 { return c.acct.used() }

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

func (ci *cachedIdentifier) identify(ctx context.Context, b *botSettings, req identityRequest) verdict {
	digest := identityDigest(b, req)
	caching := b.cacheTTL > 0 || b.negativeTTL > 0
	if caching {
		if res, ok := ci.cached(digest[:], b, req); ok {
			ci.metrics.observeCache("identity", true)
			return res
		}
	}
	key := string(digest[:])
	// Concurrent requests for one key make one call, whatever the TTLs.
	found, ok := awaitFlight(ctx, &ci.caches.flights, key, func(ctx context.Context) foundVerdict {
		if caching {
			if res, ok := ci.sharedCached(ctx, key, b, req); ok {
				return foundVerdict{res: res, shared: true}
			}
		}
		// A verdict is as old as its question: one asked before a purge and
		// answered after it is covered by the purge.
		asked := ci.now()
		res := ci.next.identify(ctx, b, req)
		if ttl := cacheTTL(b, res); ttl > 0 {
			v := encodeVerdict(res, asked)
			ci.caches.storeVerdict(key, v, asked, asked.Add(ttl), ttl)
			if ci.shared != nil {
				ci.shared.set(ctx, key, v, ttl)
			}
		}
		return foundVerdict{res: res}
	})
	if caching {
		// A verdict the shared cache gave is counted there, not as a miss here.
		if found.shared {
			ci.metrics.observeCache("shared", true)
		} else {
			ci.metrics.observeCache("identity", false)
		}
	}
	if !ok {
		return failure(fmt.Errorf("visitor left: %w", context.Cause(ctx)), false)
	}
	return found.res
}

// foundVerdict is a verdict a request waited for, and whether the shared cache gave it.
type foundVerdict struct {
	res    verdict
	shared bool
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

// cached returns a verdict of the local cache that may be served (servable).
func (ci *cachedIdentifier) cached(key []byte, b *botSettings, req identityRequest) (verdict, bool) {
	v, ok := ci.caches.verdict(key)
	if !ok {
		return verdict{}, false
	}
	res := v.verdict()
	if _, ok := ci.servable(b, req, res, v.stored()); !ok {
		return verdict{}, false
	}
	res.cacheHit = true
	res.apiTime = 0
	return res, true
}

// sharedCached looks a verdict up in the shared cache after a local miss. One found
// is served as a local one would be (servable); it is then kept locally for the rest
// of its life.
func (ci *cachedIdentifier) sharedCached(ctx context.Context, key string, b *botSettings, req identityRequest) (verdict, bool) {
	if ci.shared == nil {
		return verdict{}, false
	}
	v, read := ci.shared.get(ctx, key)
	if read != sharedHit {
		ci.metrics.observeShared(read)
		return verdict{}, false
	}
	res, stored := v.verdict(), v.stored()
	ttl, ok := ci.servable(b, req, res, stored)
	if !ok {
		ci.metrics.observeShared(sharedMiss)
		return verdict{}, false
	}
	ci.metrics.observeShared(sharedHit)
	ci.caches.storeVerdict(key, v, stored, stored.Add(ttl), ttl-ci.now().Sub(stored))
	res.cacheHit = true
	return res, true
}

// servable is the one rule for serving a cached verdict, local or shared: it is
// younger than the TTL of the bot's settings now running (a reload that shortens a
// TTL applies to verdicts cached before it), and no purge covers it. Purges name the
// bot whose settings served the verdict: `*` for every id that `bot *` serves, as
// their verdicts share its keys. It returns the verdict's TTL.
func (ci *cachedIdentifier) servable(b *botSettings, req identityRequest, res verdict, stored time.Time) (time.Duration, bool) {
	ttl := cacheTTL(b, res)
	if ci.now().Sub(stored) >= ttl || ci.marks.hides(b.id, req.token, res, stored, ttl) {
		return 0, false
	}
	return ttl, true
}

// cacheTTL is how long a verdict may be served: verified identities for cache_ttl,
// rejections for negative_ttl, errors never, capped by the answer's Cache-Control.
func cacheTTL(b *botSettings, res verdict) time.Duration {
	var ttl time.Duration
	switch res.kind {
	case verdictVerified:
		ttl = b.cacheTTL
	case verdictRejected:
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
	digest := identityDigest(b, req)
	return string(digest[:])
}

// identityDigest is identityKey as an array, which a cache lookup takes without
// allocating.
func identityDigest(b *botSettings, req identityRequest) [sha256.Size]byte {
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
	h.Sum(sum[:0])
	return sum
}
