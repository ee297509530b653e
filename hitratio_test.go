package customauth

import (
	"math/rand"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// The hit ratio of the verdict store, next to the store it replaced (a ristretto
// cache with TinyLFU admission, kept here as it was), on the same skewed request
// sequence: visitors drawn from a Zipf distribution (s = 1.1) over 1M visitors, of
// whom the default cache_size holds a fraction. bench/run.sh's memory scenario runs
// this test and reports its line.

const (
	zipfVisitors = 1_000_000
	zipfRequests = 2_000_000
	zipfS        = 1.1
)

// TestZipfHitRatio asserts that the store's hit ratio is no lower than the replaced
// store's, and logs both in the line that bench/run.sh reads.
func TestZipfHitRatio(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a measurement: two million requests through two 64MB caches")
	}
	v := realisticVerdict(t)
	store, held := zipfHits(t, newStoreLookup(t, defaultCacheSize), v)
	replaced, replacedHeld := zipfHits(t, newRistrettoLookup(t, defaultCacheSize), v)
	t.Logf("zipf hit ratio: store=%.4f replaced=%.4f (s=%.1f, %d visitors, %d requests, cache_size %d, verdict %d bytes; the store held %d verdicts, the replaced one %d)",
		store, replaced, zipfS, zipfVisitors, zipfRequests, defaultCacheSize, len(v), held, replacedHeld)
	if store < replaced {
		t.Errorf("hit ratio %.4f, below the replaced store's %.4f", store, replaced)
	}
}

// realisticVerdict is the verdict of the small contact the memory scenario uses.
func realisticVerdict(t *testing.T) storedVerdict {
	res := parsingIdentifier{}.identify(t.Context(), nil, identityRequest{token: "visitor-123456"})
	if res.kind != verdictVerified {
		t.Fatalf("not verified: %v", res.err)
	}
	return encodeVerdict(res, time.Unix(1_700_000_000, 0))
}

// verdictLookup is one store under test: get reports a hit, set stores.
type verdictLookup struct {
	get   func(key string) bool
	set   func(key string, v storedVerdict)
	count func() int
}

// zipfHits runs the request sequence (the same for every store: a fixed seed) and
// returns the hit ratio and how many of the visitors the store still holds.
func zipfHits(t *testing.T, l verdictLookup, v storedVerdict) (float64, int) {
	t.Helper()
	zipf := rand.NewZipf(rand.New(rand.NewSource(1)), zipfS, 1, zipfVisitors-1)
	hits := 0
	for range zipfRequests {
		key := visitorKey(zipf.Uint64())
		if l.get(key) {
			hits++
			continue
		}
		l.set(key, v)
	}
	return float64(hits) / zipfRequests, l.count()
}

func visitorKey(i uint64) string {
	return identityKey(&botSettings{id: "shop"}, identityRequest{token: "visitor-" + strconv.FormatUint(i, 10)})
}

func newStoreLookup(t *testing.T, size int64) verdictLookup {
	c, err := newCaches("zipf", size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destruct() })
	return verdictLookup{
		get: func(key string) bool { _, ok := c.verdict([]byte(key)); return ok },
		set: func(key string, v storedVerdict) { c.storeVerdict(key, v) },
		count: func() int {
			n := 0
			for i := range uint64(zipfVisitors) {
				if _, ok := c.blocks.get([]byte(visitorKey(i))); ok {
					n++
				}
			}
			return n
		},
	}
}

// newRistrettoLookup is the replaced store: ristretto sized as it was (ten counters
// per expected 1 KiB entry), each verdict charged at its heap (allocator size class,
// plus the entry and ristretto's maps), a store waited for.
func newRistrettoLookup(t *testing.T, size int64) verdictLookup {
	items, err := ristretto.NewCache(&ristretto.Config[string, storedVerdict]{
		NumCounters: max(10*size/(1<<10), 1000),
		MaxCost:     size,
		BufferItems: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(items.Close)
	return verdictLookup{
		get: func(key string) bool { _, ok := items.Get(key); return ok },
		set: func(key string, v storedVerdict) {
			if items.Set(key, v, replacedVerdictCost(v)) {
				items.Wait()
			}
		},
		count: func() int {
			n := 0
			for i := range uint64(zipfVisitors) {
				if _, ok := items.Get(visitorKey(i)); ok {
					n++
				}
			}
			return n
		},
	}
}

// replacedVerdictCost is what the replaced store charged for a verdict: its block in
// the allocator's size class, and 224 bytes for the entry and ristretto's maps.
func replacedVerdictCost(v storedVerdict) int64 {
	n := cap(v)
	step := 8192
	switch {
	case n <= 256:
		step = 16
	case n <= 1024:
		step = 64
	case n <= 8192:
		step = 256
	}
	return int64((n+step-1)/step*step) + 224
}
