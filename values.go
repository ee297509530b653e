package customauth

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// accountant keeps the one budget, cache_size, that everything cached shares: the
// verdict store's index (paid first), its chunks, taken as they are needed, and the
// heap values (bot settings and whitelists), each at its cost. When the budget is
// spent, what was written or used longest ago goes, whichever side it is on: a chunk
// of verdicts or a heap value. A logical clock, ticked by each store, dates both.
type accountant struct {
	size   int64
	clock  atomic.Uint64
	values heapValues
	blocks chunkStore

	mu         sync.Mutex
	available  int64
	free       []int // chunks given back
	next       int   // the first chunk never taken
	chunkCount int
	chunkSize  int64
}

// chunkStore is the verdict store (blocks.go) as the heap values see it: how old its
// oldest chunk is, and a way to give that chunk back.
type chunkStore interface {
	oldestChunk() (tick uint64, ok bool)
	releaseOldest() bool
}

// maxEvictionsPerStore bounds the evictions one store may make before it gives up.
const maxEvictionsPerStore = 1 << 16

func (a *accountant) tick() uint64 { return a.clock.Add(1) }

// setChunks sets the verdict store's shape: chunkCount chunks of chunkSize bytes, and
// an index of indexBytes, paid from the budget at once.
func (a *accountant) setChunks(chunkCount, chunkSize int, indexBytes int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.chunkCount, a.chunkSize = chunkCount, int64(chunkSize)
	a.available = a.size - indexBytes
}

// takeChunk returns a chunk for the verdict store, if the budget allows one.
func (a *accountant) takeChunk() (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.available < a.chunkSize {
		return 0, false
	}
	var id int
	switch {
	case len(a.free) > 0:
		id = a.free[len(a.free)-1]
		a.free = a.free[:len(a.free)-1]
	case a.next < a.chunkCount:
		id = a.next
		a.next++
	default:
		return 0, false
	}
	a.available -= a.chunkSize
	return id, true
}

func (a *accountant) giveChunk(id int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.free = append(a.free, id)
	a.available += a.chunkSize
}

// reserve takes cost bytes from the budget, if it has them.
func (a *accountant) reserve(cost int64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.available < cost {
		return false
	}
	a.available -= cost
	return true
}

// forceReserve takes cost bytes (gives them back when negative) whatever the budget
// has: for differences that are already in the cache.
func (a *accountant) forceReserve(cost int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.available -= cost
}

func (a *accountant) release(cost int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.available += cost
}

// used is how much of the budget is taken.
func (a *accountant) used() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.size - a.available
}

// heapValues are the cached values that hold pointers and so live on the heap: few,
// and each charged to the budget at the heap it holds. They leave in the order they
// came, except that one used since it came (or came back) goes round once more.
type heapValues struct {
	acct   *accountant
	mu     sync.RWMutex
	items  map[string]*heapValue
	queue  list.List // of *heapValue, oldest first
	closed bool
}

type heapValue struct {
	key    string
	entry  *cacheEntry
	queued uint64        // the tick when it joined the queue
	used   atomic.Uint64 // the tick of its last use
	elem   *list.Element
}

func (v *heapValues) get(key string) (*cacheEntry, bool) {
	v.mu.RLock()
	hv, ok := v.items[key]
	v.mu.RUnlock()
	if !ok {
		return nil, false
	}
	hv.used.Store(v.acct.clock.Load())
	return hv.entry, true
}

// set stores an entry, making room in the budget for what it costs beyond the entry
// it replaces, which stays meanwhile. An entry that no room can be made for, or that
// comes after the cache closed, is refused, and told so if it listens.
func (v *heapValues) set(key string, e *cacheEntry) {
	v.mu.RLock()
	old := v.items[key]
	v.mu.RUnlock()
	var oldCost int64
	if old != nil {
		oldCost = old.entry.cost
	}
	if e.cost > oldCost && !v.makeRoom(e.cost-oldCost, key) {
		if old == nil || !sameValue(old.entry.value, e.value) {
			tellEvicted(e.value) // else it stays, as the entry it was
		}
		return
	}
	v.acct.forceReserve(min(e.cost-oldCost, 0)) // a smaller entry gives the difference back
	hv := &heapValue{key: key, entry: e, queued: v.acct.tick()}
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		v.acct.release(e.cost - oldCost)
		tellEvicted(e.value)
		return
	}
	replaced := v.items[key]
	if replaced != nil {
		v.queue.Remove(replaced.elem)
	}
	v.items[key] = hv
	hv.elem = v.queue.PushBack(hv)
	v.mu.Unlock()
	// What was reserved counted the entry seen first as replaced; another may have
	// replaced or evicted it meanwhile.
	var replacedCost int64
	if replaced != nil {
		replacedCost = replaced.entry.cost
	}
	v.acct.forceReserve(oldCost - replacedCost)
	if replaced != nil && !sameValue(replaced.entry.value, e.value) {
		tellEvicted(replaced.entry.value)
	}
}

// makeRoom reserves cost bytes, evicting the older of the oldest heap value (other
// than the one under key, being replaced) and the verdict store's oldest chunk until
// the budget has them.
func (v *heapValues) makeRoom(cost int64, key string) bool {
	a := v.acct
	for range maxEvictionsPerStore {
		if a.reserve(cost) {
			return true
		}
		chunk, haveChunks := a.blocks.oldestChunk()
		if victim, ok := v.evictOlderThan(chunk, !haveChunks, key); ok {
			tellEvicted(victim)
			continue
		}
		if !haveChunks || !a.blocks.releaseOldest() {
			return false
		}
	}
	return false
}

// evictOlderThan evicts the oldest value if it is older than tick, or whatever its
// age if force, and returns it; the value under key keep (if any) goes round again.
func (v *heapValues) evictOlderThan(tick uint64, force bool, keep string) (any, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for range v.queue.Len() + 1 {
		front := v.queue.Front()
		if front == nil {
			return nil, false
		}
		hv := front.Value.(*heapValue)
		if hv.used.Load() > hv.queued || (keep != "" && hv.key == keep) {
			hv.queued = v.acct.tick() // used since it came: once more round
			v.queue.MoveToBack(front)
			continue
		}
		if !force && hv.queued >= tick {
			return nil, false
		}
		v.queue.Remove(front)
		delete(v.items, hv.key)
		v.acct.release(hv.entry.cost)
		return hv.entry.value, true
	}
	return nil, false
}

func (v *heapValues) remove(key string) bool {
	v.mu.Lock()
	hv, ok := v.items[key]
	if ok {
		v.queue.Remove(hv.elem)
		delete(v.items, key)
	}
	v.mu.Unlock()
	if ok {
		v.acct.release(hv.entry.cost)
		tellEvicted(hv.entry.value)
	}
	return ok
}

// clear evicts every value when the cache closes, and refuses those that come later.
func (v *heapValues) clear() {
	v.mu.Lock()
	items := v.items
	v.items = map[string]*heapValue{}
	v.queue.Init()
	v.closed = true
	v.mu.Unlock()
	for _, hv := range items {
		v.acct.release(hv.entry.cost)
		tellEvicted(hv.entry.value)
	}
}

// evictionListener is a cached heap value that wants to know when it leaves the
// cache (evicted, replaced, deleted, refused, or the cache closed): it is told exactly
// once, and never while a lock of the cache is held.
type evictionListener interface{ evicted() }

func tellEvicted(value any) {
	if l, ok := value.(evictionListener); ok {
		l.evicted()
	}
}

// sameValue reports whether a value stored again is the one already cached, which
// then has not left the cache.
func sameValue(old, value any) bool {
	l, ok := old.(evictionListener)
	if !ok {
		return true // nobody to tell
	}
	m, ok := value.(evictionListener)
	return ok && l == m
}

// unsafeUint64s views mapped memory, which is page-aligned, as uint64s.
func unsafeUint64s(b []byte) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
}

// cacheEntry is a cached heap value, with when it was stored and when it stops being
// served; both are checked by its reader, against the handler's clock.
type cacheEntry struct {
	value   any
	cost    int64
	stored  time.Time
	expires time.Time
}
