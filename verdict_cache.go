package customauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"
)

// cachedIdentifier answers from the cache, and makes one API call for all concurrent
// requests with the same token and settings.
type cachedIdentifier struct {
	caches  *caches
	next    identifier
	metrics *metrics
	now     func() time.Time
	shared  *sharedCache // the fleet's cache behind the local one; nil: none (shared_cache.go)
	marks   *purgeMarks  // purges: verdicts not to serve (marks.go)
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
		if ttl := verdictTTL(b, res); ttl > 0 {
			v := encodeVerdict(res, asked)
			ci.caches.storeVerdict(key, v)
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

// cached returns a verdict of the local cache that may be served (servable).
func (ci *cachedIdentifier) cached(key []byte, b *botSettings, req identityRequest) (verdict, bool) {
	v, ok := ci.caches.verdict(key)
	if !ok {
		return verdict{}, false
	}
	res := v.verdict()
	if !ci.servable(b, req, res, v.stored()) {
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
	res := v.verdict()
	if !ci.servable(b, req, res, v.stored()) {
		ci.metrics.observeShared(sharedMiss)
		return verdict{}, false
	}
	ci.metrics.observeShared(sharedHit)
	ci.caches.storeVerdict(key, v)
	res.cacheHit = true
	return res, true
}

// servable is the one rule for serving a cached verdict, local or shared: it is
// younger than the TTL of the bot's settings now running (a reload that shortens a
// TTL applies to verdicts cached before it), and no purge covers it. Purges name the
// bot whose settings served the verdict: `*` for every id that `bot *` serves, as
// their verdicts share its keys.
func (ci *cachedIdentifier) servable(b *botSettings, req identityRequest, res verdict, stored time.Time) bool {
	ttl := verdictTTL(b, res)
	return ci.now().Sub(stored) < ttl && !ci.marks.hides(b.id, req.token, res, stored, ttl)
}

// verdictTTL is how long a verdict may be served: verified identities for cache_ttl,
// rejections for negative_ttl, errors never, capped by the answer's Cache-Control.
func verdictTTL(b *botSettings, res verdict) time.Duration {
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
