package customauth

// What cached things cost, in one place. The figures are measured, not derived: on an
// upgrade of Go, or a change to the cache's store or to what a cached bot or list
// holds, measure them again with the tests named beside each, and adjust.

// A verdict block in the store takes an 8-byte header (key length, value length),
// its key and its value, rounded up to 8 bytes; the store charges the budget whole
// chunks (blocks.go), and its index first. TestCacheStaysWithinCacheSize measures
// the resident memory this costs through the real handler.
const entryHeaderLen = 8

// indexBytesPer is the chunk bytes per index slot (8 bytes): the index is 1/17 of
// the budget, a slot for every 128 bytes of chunk, so that an entry of a few hundred
// bytes seldom finds its bucket full.
const indexBytesPer = 128

// remoteBotOverhead is the heap a cached bot settings answer holds besides the answer
// and its whitelist entries: the remoteBot, its botSettings with their maps, breaker
// and metric series, and the cache's own entry (cacheEntry, heapValue, its map slot
// and queue element). Measured by TestRemoteBotCostMatchesHeap.
const remoteBotOverhead = 4096

// The heap a cached list holds, measured by TestWhitelistCostMatchesHeap: per entry,
// its map slot, rule and string header (the text comes on top, since the compiled host
// keeps the entry's string); per list, the two maps and the cache's own entry.
const (
	whitelistEntryOverhead = 144
	whitelistOverhead      = 768
)

// whitelistCost is the heap, in bytes, that the list compiled from entries holds. It
// errs on the high side (duplicates and invalid entries count too), so that the heap
// stays within cache_size.
func whitelistCost(entries []string) int64 {
	cost := int64(whitelistOverhead)
	for _, e := range entries {
		cost += whitelistEntryOverhead + int64(len(e))
	}
	return cost
}
