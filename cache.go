package customauth

import (
	"context"
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
// the next request at once. It stays until eviction takes its memory back.
func (c *caches) store(key string, value any, cost int64, stored, expires time.Time) {
	c.acct.values.set(key, &cacheEntry{value: value, cost: cost, stored: stored, expires: expires})
}

// verdict returns a copy of the verdict cached under key, young or old: its reader
// checks its age, which the block carries (storedVerdict.stored).
func (c *caches) verdict(key []byte) (storedVerdict, bool) {
	v, ok := c.blocks.get(key)
	return storedVerdict(v), ok
}

// storeVerdict caches a verdict. It stays until the store's first-in, first-out
// eviction reaches it: the block carries when it was stored, and its reader checks its
// age against the bot's TTL.
func (c *caches) storeVerdict(key string, v storedVerdict) {
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
