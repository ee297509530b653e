package customauth

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newTestCaches(t *testing.T, size int64) *caches {
	t.Helper()
	c, err := newCaches("test-"+t.Name(), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Destruct() })
	return c
}

func testKey(i int) string { return strings.Repeat("k", 24) + strconv.Itoa(100_000_000 + i)[1:] }

// TestBlockStoreKeepsVerdicts: what is stored is read back as it was, replaced,
// removed, refused when larger than a chunk, and not read once the cache is closed.
func TestBlockStoreKeepsVerdicts(t *testing.T) {
	c := newTestCaches(t, 1<<20)
	value := func(n int, b byte) storedVerdict { return storedVerdict(bytes.Repeat([]byte{b}, n)) }
	c.storeVerdict("a", value(100, 'a'))
	c.storeVerdict("b", value(3000, 'b'))
	for _, tc := range []struct {
		key  string
		want storedVerdict
	}{{"a", value(100, 'a')}, {"b", value(3000, 'b')}, {"c", nil}} {
		got, ok := c.verdict([]byte(tc.key))
		if ok != (tc.want != nil) || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", tc.key, len(got), ok, len(tc.want))
		}
	}
	c.storeVerdict("a", value(50, 'A'))
	if got, _ := c.verdict([]byte("a")); !bytes.Equal(got, value(50, 'A')) {
		t.Errorf("replaced: %q", got)
	}
	if !c.remove("a") || c.remove("a") {
		t.Error("remove reported wrongly")
	}
	if _, ok := c.verdict([]byte("a")); ok {
		t.Error("removed, still found")
	}
	big := value(c.blocks.chunkSize, 'x')
	c.storeVerdict("big", big)
	if _, ok := c.verdict([]byte("big")); ok {
		t.Error("an entry larger than a chunk was kept")
	}
	if err := c.blocks.close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.verdict([]byte("b")); ok {
		t.Error("found in a closed store")
	}
	c.storeVerdict("d", value(10, 'd')) // no crash
}

// TestBlockStoreEvictsOldestFirst writes three times what a small cache holds: the
// budget is never passed, the newest entries are found and the oldest are not, and
// an entry read all along stays.
func TestBlockStoreEvictsOldestFirst(t *testing.T) {
	const size = 1 << 20
	c := newTestCaches(t, size)
	v := storedVerdict(bytes.Repeat([]byte{'v'}, 300))
	const count = 3 * size / 340
	c.storeVerdict("hot", v)
	for i := range count {
		c.storeVerdict(testKey(i), v)
		if _, ok := c.verdict([]byte("hot")); !ok && i%100 == 0 {
			t.Fatalf("the entry read all along was evicted after %d stores", i)
		}
		if used := c.used(); used > size {
			t.Fatalf("%d bytes used of %d", used, size)
		}
	}
	found := func(from, to int) (n int) {
		for i := from; i < to; i++ {
			if _, ok := c.verdict([]byte(testKey(i))); ok {
				n++
			}
		}
		return n
	}
	if n := found(0, count/3); n > 0 {
		t.Errorf("%d of the oldest third still found", n)
	}
	if n := found(count-count/10, count); n < count/10*9/10 {
		t.Errorf("%d of the newest %d found", n, count/10)
	}
	if used := c.used(); used < size*9/10 {
		t.Errorf("%d bytes used of %d: the budget is not used", used, size)
	}
}

// listener counts how often it was told that it left the cache.
type listener struct{ told int }

func (l *listener) evicted() { l.told++ }

// TestHeapValuesShareTheBudget: a heap value takes its cost from the budget that the
// verdicts fill, the verdicts' oldest chunks making room, and the verdicts take it
// back once the value is old; a listening value is told exactly once whenever it
// leaves: replaced, removed, refused, evicted, or the cache closed.
func TestHeapValuesShareTheBudget(t *testing.T) {
	const size = 1 << 20
	c := newTestCaches(t, size)
	v := storedVerdict(bytes.Repeat([]byte{'v'}, 300))
	fill := func(from int) {
		for i := range 2 * size / 340 {
			c.storeVerdict(testKey(from+i), v)
			if used := c.used(); used > size {
				t.Fatalf("after verdict %d: %d bytes used of %d", i, used, size)
			}
		}
	}
	fill(0)
	chunks := c.blocks.chunksHeld()

	big := &listener{}
	c.store("big", big, size/2, time.Time{}, time.Time{})
	if _, ok := c.entry("big"); !ok {
		t.Fatal("the heap value was not stored")
	}
	if held := c.blocks.chunksHeld(); held > chunks-size/2/c.blocks.chunkSize {
		t.Errorf("the verdicts hold %d chunks of %d bytes beside a value of %d", held, c.blocks.chunkSize, size/2)
	}
	if used := c.used(); used > size {
		t.Errorf("%d bytes used of %d", used, size)
	}
	fill(1_000_000)
	if _, ok := c.entry("big"); ok || big.told != 1 {
		t.Errorf("an old heap value: still cached %v, told %d times", ok, big.told)
	}
	if c.blocks.chunksHeld() < chunks {
		t.Errorf("the verdicts hold %d chunks, had %d before the value came", c.blocks.chunksHeld(), chunks)
	}

	replaced, again, removed, refused, closed := &listener{}, &listener{}, &listener{}, &listener{}, &listener{}
	c.store("r", replaced, 100, time.Time{}, time.Time{})
	c.store("r", again, 100, time.Time{}, time.Time{})
	c.store("r", again, 100, time.Time{}, time.Time{}) // the same value: it stays
	c.store("x", removed, 100, time.Time{}, time.Time{})
	c.remove("x")
	c.store("y", refused, 2*size, time.Time{}, time.Time{})
	c.store("z", closed, 100, time.Time{}, time.Time{})
	if err := c.Destruct(); err != nil {
		t.Fatal(err)
	}
	late := &listener{}
	c.store("late", late, 100, time.Time{}, time.Time{})
	for name, l := range map[string]*listener{"replaced": replaced, "stored again, then closed": again,
		"removed": removed, "refused": refused, "closed": closed, "stored after closing": late} {
		if l.told != 1 {
			t.Errorf("%s: told %d times, want once", name, l.told)
		}
	}
}

// TestHeapValueStoredAgainStays: a value stored again (as a refresh that found the
// same settings does) while the budget is spent stays cached and is not told it
// left; another value that needs its room evicts it, and it is told once.
func TestHeapValueStoredAgainStays(t *testing.T) {
	const size = 1 << 20
	c := newTestCaches(t, size)
	kept, other := &listener{}, &listener{}
	c.store("kept", kept, size*3/4, time.Time{}, time.Time{})
	c.store("kept", kept, size*95/100, time.Time{}, time.Time{}) // beyond the budget
	if _, ok := c.entry("kept"); !ok || kept.told != 0 {
		t.Fatalf("stored again: cached %v, told %d times", ok, kept.told)
	}
	c.store("other", other, size*3/4, time.Time{}, time.Time{})
	if _, ok := c.entry("kept"); ok || kept.told != 1 || other.told != 0 {
		t.Errorf("evicted: still cached %v, told %d times; the new one told %d", ok, kept.told, other.told)
	}
	if used := c.used(); used > size {
		t.Errorf("%d bytes used of %d", used, size)
	}
}

// TestSharedVerdictRoundTripThroughTheStore: a verdict one gateway put in the shared
// cache reaches another gateway's store as the very same bytes (the encoding both
// keep), serves from there, and a purge of its token deletes it from the store.
func TestSharedVerdictRoundTripThroughTheStore(t *testing.T) {
	r := startRedis(t)
	api := newIdentityAPI(t)
	first := fleetHandler(t, api, r.url(""), &Bot{})
	second := fleetHandler(t, api, r.url("/0"), &Bot{})
	for _, h := range []*Handler{first, second} {
		if got := verify(t, h, "alice-token"); got != "verified/" {
			t.Fatalf("outcome %s", got)
		}
	}
	key := identityKey(second.bots["shop"], identityRequest{token: "alice-token"})
	c := redisClient(t, r)
	shared, err := c.Do(t.Context(), c.B().Get().Key(sharedVerdictKey(key)).Build()).AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	local, ok := second.caches.verdict([]byte(key))
	if !ok || !bytes.Equal(sealVerdict(key, local), shared) {
		t.Fatalf("the second gateway's store holds %q (%v), the shared cache %q", local, ok, shared)
	}
	if got := verify(t, second, "alice-token"); got != "verified/" || api.calls.Load() != 1 {
		t.Errorf("from the store: %s after %d API calls, want verified after 1", got, api.calls.Load())
	}
	res, err := purgeHandlers(t.Context(), []*Handler{second}, purgeRequest{Bot: "shop", Token: ptr("alice-token")})
	if err != nil || res.Purged != 1 {
		t.Fatalf("purge: %+v, %v", res, err)
	}
	if _, ok := second.caches.verdict([]byte(key)); ok {
		t.Error("the purged verdict is still in the store")
	}
}

// TestStoreConcurrently stores, reads and removes verdicts and heap values from many
// goroutines in a small cache that evicts all the time: every verdict read is the one
// stored under its key, whole, and the budget holds.
func TestStoreConcurrently(t *testing.T) {
	const size = 1 << 20
	c := newTestCaches(t, size)
	valueOf := func(key string, n int) storedVerdict { return storedVerdict(strings.Repeat(key, n)) }
	done := make(chan error)
	for g := range 8 {
		go func() {
			var err error
			for i := range 4000 {
				key := testKey((g*7 + i) % 3000)
				switch i % 7 {
				case 0:
					c.store(key, &listener{}, 3000, time.Time{}, time.Time{})
				case 1:
					c.remove(key)
				case 2, 3:
					c.storeVerdict(key, valueOf(key, 1+i%40))
				default:
					if v, ok := c.verdict([]byte(key)); ok && (len(v)%len(key) != 0 || string(v) != strings.Repeat(key, len(v)/len(key))) {
						err = fmt.Errorf("%s read %d bytes of another value", key, len(v))
					}
					c.entry(key)
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if used := c.used(); used > size {
		t.Errorf("%d bytes used of %d", used, size)
	}
}

// TestHeapValueCostFollowsItsValue: a value stored again at a lower cost gives the
// difference back to the budget; one that is read is kept when eviction looks for room
// (the second chance), so an older value that is not read goes first.
func TestHeapValueCostFollowsItsValue(t *testing.T) {
	const size = 1 << 20
	c := newTestCaches(t, size)
	c.store("r", &listener{}, 1000, time.Time{}, time.Time{})
	before := c.used()
	c.store("r", &listener{}, 100, time.Time{}, time.Time{})
	if freed := before - c.used(); freed != 900 {
		t.Errorf("stored again at 100 instead of 1000: %d bytes given back, want 900", freed)
	}

	c = newTestCaches(t, size)
	read, unread := &listener{}, &listener{}
	c.store("read", read, size/3, time.Time{}, time.Time{})
	c.store("unread", unread, size/3, time.Time{}, time.Time{})
	if _, ok := c.entry("read"); !ok {
		t.Fatal("the value was not stored")
	}
	c.store("new", &listener{}, size/3, time.Time{}, time.Time{}) // room for it must be made
	if _, ok := c.entry("read"); !ok || read.told != 0 || unread.told != 1 {
		t.Errorf("the value read was evicted (told %d), the one not read told %d times", read.told, unread.told)
	}
}
