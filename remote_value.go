package customauth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// remoteValue is a value that an API answers and the handler keeps in its cache,
// where it counts toward cache_size: a bot's settings from bots_url, a whitelist_url's
// list, a jwks_url's keys. The rules are those of every such value:
//
//   - It is fetched on first need, by one fetch that every request asking meanwhile
//     waits for; a visitor who leaves stops waiting at once, and the fetch goes on
//     for the others, within its own timeout and the config's life (awaitFlight).
//   - Once older than ttl, the next request starts a refresh in the background, under
//     the background context (the config's, or a remote bot's own), and is answered
//     with the value at hand, which keeps serving while refreshes fail. At most one
//     refresh per value is under way, and at most maxBackgroundRefreshes in all for
//     one config and writer (remoteValue.slots), so that a hanging API holds a bounded
//     number of connections and goroutines however many values are cached. A value
//     whose refresh finds no slot free tries again on its next request.
//   - After a failed fetch the API is not asked again for holdBackAfterFailure: the
//     last good value serves meanwhile or, for one never fetched, the failure. A call
//     that was not made because max_in_flight was full tells nothing about the API,
//     and holds nothing back.
//
// A value evicted from the cache is fetched again on next need.
type remoteValue[T comparable] struct {
	env *environment
	// background is the context of the refreshes, and slots bounds how many run at
	// once: the operator's values and the tenants' have pools of their own
	// (botPolicy.refreshSlotsOf), so that no tenant holds back the operator's.
	background context.Context
	slots      callSlots
	ttl        time.Duration
	// fetch asks the API for the value of key; last is the value at hand (zero:
	// none). cost is the heap the value holds. A value returned with an error serves
	// the requests that waited for it, and is not kept (one too large for the cache).
	fetch func(ctx context.Context, key string, last T) (value T, cost int64, err error)
	// failed is told of each failure that holds the API back, to log it.
	failed func(key string, err error)
	// metric names the value in the cache_requests metric; "": not counted.
	metric string

	refreshing sync.Map   // key -> struct{}: the refreshes under way
	swapMu     sync.Mutex // makes swap's look and replace one step
}

// holdBackAfterFailure is how long an API is not asked again for a value after a
// failed fetch, so that an API that is down is not asked again by every request.
const holdBackAfterFailure = 5 * time.Second

// maxBackgroundRefreshes bounds the background refreshes under way at once for one
// config: for the operator's values, and for all the tenants' together.
const maxBackgroundRefreshes = 32

// kept is what the cache holds for a remote value: the last good value, and why the
// last fetch failed, if it did.
type kept[T comparable] struct {
	value T // zero: none could be had
	err   error
	// moved marks an entry whose value goes on in the entry that replaced it: its
	// leaving the cache is not the value's.
	moved atomic.Bool
}

// evicted passes the value's leaving the cache on to it, unless it stays in the
// entry that replaced this one.
func (k *kept[T]) evicted() {
	var none T
	if v, ok := any(k.value).(evictionListener); ok && k.value != none && !k.moved.Load() {
		v.evicted()
	}
}

// fetched is what a fetch gives the requests that wait for it.
type fetched[T comparable] struct {
	value T
	err   error
}

// get returns the value of key: the one at hand, fresh or not, or one fetched now.
// err says why there is none.
func (rv *remoteValue[T]) get(ctx context.Context, key string) (T, error) {
	var zero T
	e, ok := rv.env.caches.entry(key)
	if rv.metric != "" {
		rv.env.metrics.observeCache(rv.metric, ok)
	}
	if ok {
		k := e.value.(*kept[T])
		switch {
		case k.value != zero:
			if !rv.env.now().Before(e.expires) {
				rv.refreshInBackground(key)
			}
			return k.value, nil
		case rv.env.now().Before(e.expires):
			return zero, k.err // held back after a failure
		}
	}
	got, ok := awaitFlight(ctx, &rv.env.caches.flights, key, func(ctx context.Context) fetched[T] {
		if got, ok := rv.serving(key); ok {
			return got // cached by a fetch that ended after this request looked
		}
		return rv.update(ctx, key)
	})
	if !ok {
		return zero, context.Cause(ctx)
	}
	return got.value, got.err
}

// refetch fetches the value of key again at once, for a request that found the one
// it saw wanting; requests that ask meanwhile share the fetch. It does not while the
// API is held back after a failure, nor once the value changed since seen.
func (rv *remoteValue[T]) refetch(ctx context.Context, key string, seen T) (T, error) {
	got, ok := awaitFlight(ctx, &rv.env.caches.flights, key, func(ctx context.Context) fetched[T] {
		if e, ok := rv.env.caches.entry(key); ok {
			k := e.value.(*kept[T])
			if k.value != seen || (k.err != nil && rv.env.now().Before(e.expires)) {
				return fetched[T]{k.value, k.err}
			}
		}
		return rv.update(ctx, key)
	})
	if !ok {
		var zero T
		return zero, context.Cause(ctx)
	}
	return got.value, got.err
}

// latest returns the value at hand once a fetch under way, if any, has ended.
func (rv *remoteValue[T]) latest(ctx context.Context, key string) (T, error) {
	got, ok := awaitFlight(ctx, &rv.env.caches.flights, key, func(context.Context) fetched[T] {
		if e, ok := rv.env.caches.entry(key); ok {
			k := e.value.(*kept[T])
			return fetched[T]{k.value, k.err}
		}
		return fetched[T]{err: errEvicted}
	})
	if !ok {
		var zero T
		return zero, context.Cause(ctx)
	}
	return got.value, got.err
}

// errEvicted is a value that left the cache while it was used.
var errEvicted = errors.New("evicted from the cache meanwhile; fetched again on next need")

// lastError is why the last fetch of key failed; nil when it succeeded.
func (rv *remoteValue[T]) lastError(key string) error {
	if e, ok := rv.env.caches.entry(key); ok {
		return e.value.(*kept[T]).err
	}
	return nil
}

// serving returns what the cache serves for key without a fetch: a fresh value, or
// a failure held back.
func (rv *remoteValue[T]) serving(key string) (fetched[T], bool) {
	e, ok := rv.env.caches.entry(key)
	if !ok || !rv.env.now().Before(e.expires) {
		return fetched[T]{}, false
	}
	k := e.value.(*kept[T])
	return fetched[T]{k.value, k.err}, true
}

// refreshInBackground starts a refresh of key unless one is under way or all slots
// are taken.
func (rv *remoteValue[T]) refreshInBackground(key string) {
	if _, busy := rv.refreshing.LoadOrStore(key, struct{}{}); busy {
		return
	}
	if !rv.slots.acquire() {
		rv.refreshing.Delete(key)
		return
	}
	go func() {
		defer func() {
			rv.slots.release()
			rv.refreshing.Delete(key)
		}()
		// Joins a first fetch of the same key that requests may be waiting for.
		rv.env.caches.flights.Do(key, func() (any, error) {
			if got, ok := rv.serving(key); ok {
				return got, nil // refreshed meanwhile, or held back after a failure
			}
			return rv.update(rv.background, key), nil
		})
	}()
}

// update fetches the value of key and keeps it, or holds the API back after a
// failure. Requests wait for it, so a visitor leaving does not end it: the fetch's
// timeout and the background context do.
func (rv *remoteValue[T]) update(ctx context.Context, key string) fetched[T] {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(rv.background, cancel)()

	last, hasLast := rv.env.caches.entry(key)
	var at T
	if hasLast {
		at = last.value.(*kept[T]).value
	}
	value, cost, err := rv.fetch(ctx, key, at)
	now := rv.env.now()
	switch {
	case err != nil && (errors.Is(err, errAllSlotsBusy) || rv.background.Err() != nil):
		return fetched[T]{at, err} // the API was not asked, or nobody needs its answer
	case err != nil:
		rv.failed(key, err)
		rv.holdBack(key, last, err, now)
		var zero T
		if value != zero {
			return fetched[T]{value, nil}
		}
		return fetched[T]{at, err}
	}
	rv.keep(key, last, &kept[T]{value: value}, cost, now, now.Add(rv.ttl))
	return fetched[T]{value, nil}
}

// holdBack remembers a failure for holdBackAfterFailure, with the last good value.
func (rv *remoteValue[T]) holdBack(key string, last *cacheEntry, err error, now time.Time) {
	if last == nil || last.value.(*kept[T]).value == *new(T) {
		// Held back until it expires; its memory goes back on eviction.
		rv.env.caches.store(key, &kept[T]{err: err}, heldBackCost, now, now.Add(holdBackAfterFailure))
		return
	}
	rv.keep(key, last, &kept[T]{value: last.value.(*kept[T]).value, err: err}, last.cost, last.stored, now.Add(holdBackAfterFailure))
}

// swap puts value in place of the one cached for key, as old as it, unless the one
// cached already is what it stands for (done). It returns the value that stays cached;
// value is told it left when it does not stay, or when nothing was cached.
func (rv *remoteValue[T]) swap(key string, value T, cost int64, done func(T) bool) T {
	rv.swapMu.Lock()
	defer rv.swapMu.Unlock()
	last, ok := rv.env.caches.entry(key)
	if !ok {
		tellEvicted(value)
		return value
	}
	if cached := last.value.(*kept[T]).value; cached != *new(T) && done(cached) {
		tellEvicted(value)
		return cached
	}
	rv.keep(key, last, &kept[T]{value: value}, cost, last.stored, last.expires)
	return value
}

// keep caches k in place of last; a value that stays marks its old entry moved.
func (rv *remoteValue[T]) keep(key string, last *cacheEntry, k *kept[T], cost int64, stored, expires time.Time) {
	if last != nil {
		if old := last.value.(*kept[T]); old.value == k.value {
			old.moved.Store(true)
		}
	}
	rv.env.caches.store(key, k, cost, stored, expires)
}

// heldBackCost is the heap of a cached failure: the entry, the error and ristretto's
// bookkeeping.
const heldBackCost = 512
