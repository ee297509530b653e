package customauth

import (
	"crypto/sha256"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// purgeMarks remember purges, so that a verdict cached before a purge is not served
// after it. A purge names a token, a contact or a whole bot; the verdicts it covers
// are spread over every cache of the process and of the fleet under keys that hash
// the token and the forwarded fields, so they cannot be found one by one. A mark says
// instead: a verdict of this bot (this contact, this token) reached before this time
// is not served. It is checked whenever a verdict is about to be served, from the
// local cache or read back from the shared one (whose verdicts carry the time they
// were reached); the check is one atomic load while no mark exists, and one map
// lookup for a bot without marks.
//
// Marks are bounded: a mark matters only while a verdict reached before it can still
// be served, that is for the longest TTL in use, and at most maxMarks are kept. A
// mark that is forgotten raises the floor: a verdict reached before the floor is not
// served either. So forgetting a mark early never serves a purged verdict; at worst
// a visitor is asked about again.
type purgeMarks struct {
	// active is false until the first mark: the common case costs one atomic load.
	active atomic.Bool
	// longestTTL is the longest TTL a verdict was checked with, in nanoseconds: how
	// long marks must be kept.
	longestTTL atomic.Int64

	mu    sync.RWMutex
	bots  map[string]*botMarks
	order []markRef // every mark set, oldest first from head on, to forget them in order
	head  int
	floor time.Time
	// latest is the time of the latest mark set: marks are forgotten relative to
	// it, so that marks need no clock of their own.
	latest time.Time
}

// botMarks are the marks of one bot: the whole bot, and by contact and by token
// (their digests, so that no contact value or token is kept).
type botMarks struct {
	all      time.Time
	contacts map[digest]time.Time
	tokens   map[digest]time.Time
}

type digest [sha256.Size]byte

// markRef is one mark as it was set, to forget it later.
type markRef struct {
	bot    string
	scope  purgeScope
	digest digest
	at     time.Time
}

// purgeScope is what a purge covers.
type purgeScope uint8

const (
	purgeBot purgeScope = iota
	purgeContact
	purgeToken
)

const (
	// maxMarks bounds the marks a process keeps (about 150 bytes each).
	maxMarks = 100_000
	// minMarkKeep is the least time a mark is kept, whatever TTLs were seen so far.
	minMarkKeep = defaultCacheTTL
)

func newPurgeMarks() *purgeMarks {
	return &purgeMarks{bots: map[string]*botMarks{}}
}

// processMarks are the marks of this process: a purge applies to every cache of it.
var processMarks = newPurgeMarks()

// contactDigest identifies a contact of a bot in marks. Contacts are compared
// case-insensitively, as emails are: a purge of `B@Example.com` covers `b@example.com`.
func contactDigest(bot, contact string) digest {
	return sha256.Sum256([]byte("contact\x00" + bot + "\x00" + strings.ToLower(contact)))
}

// tokenDigest identifies a visitor's token of a bot in marks.
func tokenDigest(bot, token string) digest {
	return sha256.Sum256([]byte("token\x00" + bot + "\x00" + token))
}

// set marks a bot, or one of its contacts or tokens, at a time. An earlier mark of
// the same thing is kept if it is later.
func (m *purgeMarks) set(ref markRef) {
	m.mu.Lock()
	defer m.mu.Unlock()
	bm := m.bots[ref.bot]
	if bm == nil {
		bm = &botMarks{}
		m.bots[ref.bot] = bm
	}
	switch ref.scope {
	case purgeBot:
		bm.all = later(bm.all, ref.at)
	case purgeContact:
		if bm.contacts == nil {
			bm.contacts = map[digest]time.Time{}
		}
		bm.contacts[ref.digest] = later(bm.contacts[ref.digest], ref.at)
	case purgeToken:
		if bm.tokens == nil {
			bm.tokens = map[digest]time.Time{}
		}
		bm.tokens[ref.digest] = later(bm.tokens[ref.digest], ref.at)
	}
	m.order = append(m.order, ref)
	m.latest = later(m.latest, ref.at)
	m.forgetOld()
	m.active.Store(true)
}

// raiseFloor hides every verdict reached before t: marks older than t may be missing.
func (m *purgeMarks) raiseFloor(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.floor = later(m.floor, t)
	m.active.Store(true)
}

// forgetOld forgets the marks that no servable verdict can predate, and the oldest
// beyond maxMarks, raising the floor to the latest forgotten. m.mu is held.
func (m *purgeMarks) forgetOld() {
	keep := max(time.Duration(m.longestTTL.Load()), minMarkKeep)
	cutoff := m.latest.Add(-keep)
	for m.head < len(m.order) && (len(m.order)-m.head > maxMarks || m.order[m.head].at.Before(cutoff)) {
		ref := m.order[m.head]
		m.forget(ref)
		m.floor = later(m.floor, ref.at)
		m.order[m.head] = markRef{}
		m.head++
	}
	// Compact once the forgotten half is worth copying the rest.
	if m.head > 1024 && 2*m.head > len(m.order) {
		m.order = append(m.order[:0:0], m.order[m.head:]...)
		m.head = 0
	}
}

// forget removes a mark unless a later one of the same thing replaced it.
func (m *purgeMarks) forget(ref markRef) {
	bm := m.bots[ref.bot]
	if bm == nil {
		return
	}
	switch ref.scope {
	case purgeBot:
		if !bm.all.After(ref.at) {
			bm.all = time.Time{}
		}
	case purgeContact:
		if !bm.contacts[ref.digest].After(ref.at) {
			delete(bm.contacts, ref.digest)
		}
	case purgeToken:
		if !bm.tokens[ref.digest].After(ref.at) {
			delete(bm.tokens, ref.digest)
		}
	}
	if bm.all.IsZero() && len(bm.contacts) == 0 && len(bm.tokens) == 0 {
		delete(m.bots, ref.bot)
	}
}

// hides reports whether a verdict of a bot, for a token, reached at stored and served
// for up to ttl, is covered by a mark or below the floor.
func (m *purgeMarks) hides(bot, token string, res verdict, stored time.Time, ttl time.Duration) bool {
	if m == nil {
		return false
	}
	m.noteTTL(ttl)
	if !m.active.Load() {
		return false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if stored.Before(m.floor) {
		return true
	}
	bm := m.bots[bot]
	if bm == nil {
		return false
	}
	if stored.Before(bm.all) {
		return true
	}
	if len(bm.tokens) > 0 && stored.Before(bm.tokens[tokenDigest(bot, token)]) {
		return true
	}
	return len(bm.contacts) > 0 && res.kind == verdictVerified &&
		stored.Before(bm.contacts[contactDigest(bot, res.identity.primary())])
}

// noteTTL records a TTL that verdicts are served with: marks are kept that long.
func (m *purgeMarks) noteTTL(ttl time.Duration) {
	for {
		cur := m.longestTTL.Load()
		if int64(ttl) <= cur || m.longestTTL.CompareAndSwap(cur, int64(ttl)) {
			return
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
