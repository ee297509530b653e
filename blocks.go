package customauth

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// blockStore keeps pointer-free blocks (the cached verdicts) in memory mapped outside
// the Go heap, so that a full cache costs its size in RSS: the collector neither scans
// these bytes nor lets the heap grow to twice them before it collects.
//
// The memory is cut in chunks. Each shard writes its entries one after the other in
// the newest of its chunks, and when that one is full it takes a chunk the budget
// still allows, or else reuses its oldest, whose entries are then gone: eviction is
// first in, first out, a chunk at a time. An entry read from a shard's oldest quarter
// is written again at its head, so a visitor who keeps coming back stays (lazy
// promotion, which gives FIFO about the hit ratio of LRU).
//
// Each shard's index is a table of 8-slot buckets, mapped too. It may forget an entry
// whose bucket is full (the oldest slot goes); the entry then simply is not found. A
// slot names a chunk and its generation, so an entry whose chunk was reused is not
// found either, and it keeps 16 bits of the key's hash so that a lookup compares keys
// only where the hash agrees.
type blockStore struct {
	mem       []byte // mapped: the chunks, then every shard's index
	chunkSize int
	chunks    []chunkState // by chunk id
	shards    []blockShard
	seed      maphash.Seed
	acct      *accountant
}

// chunkState is one chunk: which shard writes it (shard id + 1; 0 when free), which
// any shard may read while one changes it, and, read and written only under that
// shard's lock, its generation, how far it is written and the accountant's tick of
// its last write.
type chunkState struct {
	owner atomic.Int32
	gen   uint32
	fill  uint32
	last  uint64
}

type blockShard struct {
	mu     sync.Mutex
	id     int32
	index  []uint64 // mapped
	owned  []uint32 // chunk ids, oldest first; the last one is written
	closed bool
	// victims are heap values evicted to make room while the lock was held; they
	// are told once it is released.
	victims []any
	_       [64]byte // keeps the next shard's lock off this one's cache line
}

const (
	bucketSlots = 8
	// slot bits: the key hash's top 16, the chunk's generation, the chunk id, and the
	// entry's offset in 8-byte units.
	slotOffsetBits = 13
	slotChunkBits  = 21
	slotGenBits    = 14
	maxChunks      = 1 << slotChunkBits
	entryAlign     = 8
)

// newBlockStore maps the chunks and indexes for a store that has a share of acct's
// budget: the index is paid first, and chunks are taken as the budget allows.
func newBlockStore(acct *accountant) (*blockStore, error) {
	l := planBlocks(acct.size)
	mem, err := mapMemory(l.chunkCount*l.chunkSize + l.indexBytes())
	if err != nil {
		return nil, err
	}
	s := &blockStore{mem: mem, chunkSize: l.chunkSize, chunks: make([]chunkState, l.chunkCount),
		shards: make([]blockShard, l.shardCount), seed: maphash.MakeSeed(), acct: acct}
	index := mem[l.chunkCount*l.chunkSize:]
	for i := range s.shards {
		sh := &s.shards[i]
		sh.id = int32(i)
		part := index[i*l.bucketsPerShard*bucketSlots*8:][:l.bucketsPerShard*bucketSlots*8]
		sh.index = unsafeUint64s(part)
	}
	acct.setChunks(l.chunkCount, l.chunkSize, int64(l.indexBytes()))
	return s, nil
}

// blockLayout is how a budget is cut: chunks of 64 KiB (smaller in a small cache, so
// that it has at least 16), up to 16 shards of at least 16 chunks each, and an index
// slot for every 128 bytes of chunk.
type blockLayout struct {
	chunkSize, chunkCount, shardCount, bucketsPerShard int
}

func planBlocks(size int64) blockLayout {
	chunk := int64(64 << 10)
	for chunk > 4<<10 && size/chunk < 16 {
		chunk /= 2
	}
	data := size * indexBytesPer / (indexBytesPer + 8) // what the index (8 bytes a slot) leaves
	count := min(max(data/chunk, 1), maxChunks)
	shards := int64(1)
	for shards < 16 && count/(2*shards) >= 16 {
		shards *= 2
	}
	buckets := max(count*chunk/indexBytesPer/bucketSlots/shards, 1)
	return blockLayout{chunkSize: int(chunk), chunkCount: int(count), shardCount: int(shards), bucketsPerShard: int(buckets)}
}

func (l blockLayout) indexBytes() int { return l.shardCount * l.bucketsPerShard * bucketSlots * 8 }

// get copies the value stored under key into a new slice.
func (s *blockStore) get(key []byte) ([]byte, bool) {
	h := maphash.Bytes(s.seed, key)
	sh := s.shard(h)
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		return nil, false
	}
	slot, at := findEntry(s, sh, h, key)
	if slot < 0 {
		sh.mu.Unlock()
		return nil, false
	}
	entry := s.mem[at:]
	value := make([]byte, binary.LittleEndian.Uint32(entry[4:]))
	copy(value, entry[entryHeaderLen+int(binary.LittleEndian.Uint16(entry)):])
	if s.inOldestQuarter(sh, at/s.chunkSize) {
		putEntry(s, sh, h, key, value)
	}
	s.unlock(sh)
	return value, true
}

// set stores value under key, and reports whether it could: an entry larger than a
// chunk is not kept.
func (s *blockStore) set(key string, value []byte) bool {
	if blockEntrySize(len(key), len(value)) > s.chunkSize || len(key) > 1<<16-1 {
		return false
	}
	h := maphash.String(s.seed, key)
	sh := s.shard(h)
	sh.mu.Lock()
	stored := !sh.closed && putEntry(s, sh, h, key, value)
	s.unlock(sh)
	return stored
}

// remove forgets key, and reports whether it was there.
func (s *blockStore) remove(key string) bool {
	h := maphash.String(s.seed, key)
	sh := s.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closed {
		return false
	}
	slot, _ := findEntry(s, sh, h, key)
	if slot < 0 {
		return false
	}
	sh.index[slot] = 0
	return true
}

func (s *blockStore) shard(h uint64) *blockShard {
	return &s.shards[h%uint64(len(s.shards))]
}

// unlock releases a shard and tells the heap values it evicted meanwhile.
func (s *blockStore) unlock(sh *blockShard) {
	victims := sh.victims
	sh.victims = nil
	sh.mu.Unlock()
	for _, v := range victims {
		tellEvicted(v)
	}
}

// blockKey is a key as the store takes it: a lookup's on the stack, a store's string.
type blockKey interface{ ~string | ~[]byte }

// findEntry returns the index slot and the offset in mem of key's entry; slot -1: none.
func findEntry[K blockKey](s *blockStore, sh *blockShard, h uint64, key K) (int, int) {
	bucket := s.bucket(sh, h)
	for i := bucket; i < bucket+bucketSlots; i++ {
		slot := sh.index[i]
		if slot>>48 != h>>48|1 {
			continue
		}
		if at, ok := s.entryAt(sh, slot); ok && s.keyIs(at, string(key)) {
			return i, at
		}
	}
	return -1, 0
}

// entryAt returns where a slot's entry is, if its chunk still holds it.
func (s *blockStore) entryAt(sh *blockShard, slot uint64) (int, bool) {
	id := int(slot >> slotOffsetBits & (maxChunks - 1))
	c := &s.chunks[id]
	if c.owner.Load() != sh.id+1 || uint64(c.gen)&(1<<slotGenBits-1) != slot>>(slotOffsetBits+slotChunkBits)&(1<<slotGenBits-1) {
		return 0, false
	}
	off := int(slot&(1<<slotOffsetBits-1)) * entryAlign
	if off+entryHeaderLen > int(c.fill) {
		return 0, false
	}
	entry := s.mem[id*s.chunkSize+off:]
	if off+blockEntrySize(int(binary.LittleEndian.Uint16(entry)), int(binary.LittleEndian.Uint32(entry[4:]))) > int(c.fill) {
		return 0, false
	}
	return id*s.chunkSize + off, true
}

// keyIs reports whether the entry at at has key.
func (s *blockStore) keyIs(at int, key string) bool {
	n := int(binary.LittleEndian.Uint16(s.mem[at:]))
	return string(s.mem[at+entryHeaderLen:at+entryHeaderLen+n]) == key
}

func (s *blockStore) bucket(sh *blockShard, h uint64) int {
	buckets := uint64(len(sh.index) / bucketSlots)
	return int((h/uint64(len(s.shards)))%buckets) * bucketSlots
}

// putEntry writes an entry at the head of the shard and points the index at it.
func putEntry[K blockKey](s *blockStore, sh *blockShard, h uint64, key K, value []byte) bool {
	size := blockEntrySize(len(key), len(value))
	id, ok := s.room(sh, size)
	if !ok {
		return false
	}
	c := &s.chunks[id]
	at := id*s.chunkSize + int(c.fill)
	entry := s.mem[at : at+size]
	binary.LittleEndian.PutUint16(entry, uint16(len(key)))
	binary.LittleEndian.PutUint32(entry[4:], uint32(len(value)))
	copy(entry[entryHeaderLen:], key)
	copy(entry[entryHeaderLen+len(key):], value)
	slot := (h>>48|1)<<48 | uint64(c.gen)&(1<<slotGenBits-1)<<(slotOffsetBits+slotChunkBits) |
		uint64(id)<<slotOffsetBits | uint64(c.fill)/entryAlign
	c.fill += uint32(size)
	c.last = s.acct.tick()
	pointAt(s, sh, h, key, slot)
	return true
}

// pointAt sets key's index slot: the one that has key, else a free one, else the one
// whose entry is oldest.
func pointAt[K blockKey](s *blockStore, sh *blockShard, h uint64, key K, slot uint64) {
	bucket := s.bucket(sh, h)
	victim, oldest := bucket, uint64(1<<64-1)
	for i := bucket; i < bucket+bucketSlots; i++ {
		old := sh.index[i]
		at, ok := s.entryAt(sh, old)
		if !ok {
			victim, oldest = i, 0
			continue
		}
		if old>>48 == h>>48|1 && s.keyIs(at, string(key)) {
			victim = i
			break
		}
		if last := s.chunks[at/s.chunkSize].last; last < oldest {
			victim, oldest = i, last
		}
	}
	sh.index[victim] = slot
}

// room returns the chunk to write an entry of size bytes in: the newest, or a new
// one the budget allows, or the shard's oldest, reused. When the budget is spent, a
// heap value older than the shard's oldest chunk goes first.
func (s *blockStore) room(sh *blockShard, size int) (int, bool) {
	if n := len(sh.owned); n > 0 && int(s.chunks[sh.owned[n-1]].fill)+size <= s.chunkSize {
		return int(sh.owned[n-1]), true
	}
	for range maxEvictionsPerStore {
		if id, ok := s.acct.takeChunk(); ok {
			s.chunks[id].owner.Store(sh.id + 1)
			sh.owned = append(sh.owned, uint32(id))
			s.restart(id)
			return id, true
		}
		var oldest uint64
		if len(sh.owned) > 0 {
			oldest = s.chunks[sh.owned[0]].last
		}
		if victim, ok := s.acct.values.evictOlderThan(oldest, len(sh.owned) == 0, ""); ok {
			sh.victims = append(sh.victims, victim)
			continue
		}
		if len(sh.owned) == 0 {
			return 0, false
		}
		id := sh.owned[0]
		copy(sh.owned, sh.owned[1:])
		sh.owned[len(sh.owned)-1] = id
		s.restart(int(id))
		return int(id), true
	}
	return 0, false
}

// restart empties a chunk for writing: a new generation, so that the index no longer
// finds what it held.
func (s *blockStore) restart(id int) {
	c := &s.chunks[id]
	c.gen++
	c.fill = 0
	c.last = s.acct.tick()
}

// inOldestQuarter reports whether a chunk is among the oldest quarter of the shard's.
func (s *blockStore) inOldestQuarter(sh *blockShard, id int) bool {
	n := len(sh.owned)
	return n >= 4 && s.chunks[id].last <= s.chunks[sh.owned[n/4-1]].last
}

// releaseOldest gives the oldest chunk of the store back to the budget, for a heap
// value; its pages go back to the kernel. It reports whether there was one.
func (s *blockStore) releaseOldest() bool {
	var from *blockShard
	var oldest uint64 = 1<<64 - 1
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if len(sh.owned) > 0 && s.chunks[sh.owned[0]].last < oldest {
			from, oldest = sh, s.chunks[sh.owned[0]].last
		}
		sh.mu.Unlock()
	}
	if from == nil {
		return false
	}
	from.mu.Lock()
	defer from.mu.Unlock()
	if from.closed || len(from.owned) == 0 {
		return false
	}
	id := int(from.owned[0])
	from.owned = append(from.owned[:0], from.owned[1:]...)
	s.restart(id)
	s.chunks[id].owner.Store(0)
	dropPages(s.mem[id*s.chunkSize : (id+1)*s.chunkSize])
	s.acct.giveChunk(id)
	return true
}

// oldestChunk is the tick of the last write to the store's oldest chunk; ok is false
// when the store holds none.
func (s *blockStore) oldestChunk() (uint64, bool) {
	oldest, ok := uint64(1<<64-1), false
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if len(sh.owned) > 0 {
			oldest, ok = min(oldest, s.chunks[sh.owned[0]].last), true
		}
		sh.mu.Unlock()
	}
	return oldest, ok
}

// chunksHeld is how many chunks the store holds.
func (s *blockStore) chunksHeld() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.owned)
		sh.mu.Unlock()
	}
	return n
}

// close stops every shard and unmaps the memory: a lookup or a store after it finds
// the store closed.
func (s *blockStore) close() error {
	for i := range s.shards {
		s.shards[i].mu.Lock()
	}
	var err error
	if !s.shards[0].closed {
		err = unmapMemory(s.mem)
	}
	for i := range s.shards {
		s.shards[i].closed = true
	}
	for i := range s.shards {
		s.shards[i].mu.Unlock()
	}
	return err
}

// blockEntrySize is the chunk bytes an entry takes (cost.go).
func blockEntrySize(keyLen, valueLen int) int {
	return (entryHeaderLen + keyLen + valueLen + entryAlign - 1) / entryAlign * entryAlign
}
