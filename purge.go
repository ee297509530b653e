package customauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(new(PurgeAPI))
}

// PurgeAPI serves the purge endpoint on Caddy's admin API:
//
//	POST /custom-auth/purge
//	{"bot": "1f0c2a", "token": "…"}       that token's verdicts
//	{"bot": "1f0c2a", "contact": "2"}     every token's of that contact (its primary key)
//	{"bot": "1f0c2a"}                     all of that bot's
//
// It removes the matching verdicts from every cache of this gateway and, with
// shared_cache, from every gateway of the fleet, before it answers
// `{"purged": <verdicts removed here>, "gateways": <gateways that confirmed>}`. A
// website's backend calls it when a visitor logs out, a token is revoked or a contact
// changes. Caddy mounts it on its admin endpoint; it has no configuration.
type PurgeAPI struct{}

// CaddyModule returns the Caddy module information.
func (*PurgeAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.custom_auth_purge",
		New: func() caddy.Module { return new(PurgeAPI) },
	}
}

// Routes returns the purge route.
func (a *PurgeAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/custom-auth/purge", Handler: caddy.AdminHandlerFunc(a.handlePurge)}}
}

// purgeTimeout bounds a purge: telling the fleet and hearing back from every gateway.
const purgeTimeout = 5 * time.Second

// purgeRequest is the body of POST /custom-auth/purge. A token or a contact that is
// given must not be empty: an empty one would widen the purge to the whole bot.
type purgeRequest struct {
	Bot     string  `json:"bot"`
	Token   *string `json:"token,omitempty"`
	Contact *string `json:"contact,omitempty"`
}

// purgeResult is the answer of a purge.
type purgeResult struct {
	// Purged counts the verdicts removed from this gateway's caches by their key
	// (a token's); a contact or a bot is purged by a mark, which removes nothing
	// one by one (see purgeMarks).
	Purged int `json:"purged"`
	// Gateways counts, with shared_cache, the gateways that confirmed the purge,
	// this one included.
	Gateways *int `json:"gateways,omitempty"`
}

func (a *PurgeAPI) handlePurge(w http.ResponseWriter, r *http.Request) error {
	req, err := decodePurgeRequest(w, r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), purgeTimeout)
	defer cancel()
	result, err := purge(ctx, runningHandlers(), req)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(result)
}

// maxPurgeRequestSize bounds the body of a purge: a bot id and a token or a contact.
const maxPurgeRequestSize = 64 << 10

// decodePurgeRequest reads the body of a purge. An unknown field is refused, so that
// a misspelt "tokn" does not purge the whole bot.
func decodePurgeRequest(w http.ResponseWriter, r *http.Request) (purgeRequest, error) {
	var req purgeRequest
	if err := decodeAdminPost(w, r, maxPurgeRequestSize, &req); err != nil {
		return req, err
	}
	if err := req.check(); err != nil {
		return req, badAdminRequest(err)
	}
	return req, nil
}

// check refuses a purge that names no bot, or a token or contact that is empty or
// given with the other.
func (req purgeRequest) check() error {
	switch {
	case req.Bot == "":
		return errors.New(`"bot" is required`)
	case req.Token != nil && req.Contact != nil:
		return errors.New(`give "token" or "contact", not both`)
	case req.Token != nil && *req.Token == "":
		return errors.New(`"token" is empty; leave it out to purge the whole bot`)
	case req.Contact != nil && strings.TrimSpace(*req.Contact) == "":
		return errors.New(`"contact" is empty; leave it out to purge the whole bot`)
	}
	return nil
}

// purgeNotice is a purge as the fleet hears it, on the purge channel and in the purge
// log. It names the contact and the token by their digests only.
type purgeNotice struct {
	ID      string `json:"id"`
	Reply   string `json:"reply,omitempty"` // the channel that acknowledgements go to
	Bot     string `json:"bot"`
	Contact string `json:"contact,omitempty"` // hex contactDigest
	Token   string `json:"token,omitempty"`   // hex tokenDigest
	At      int64  `json:"at"`                // Unix nanoseconds
}

// newPurgeNotice is a purge of a bot's verdicts: the bot the request names, or `*`
// when `bot *` serves it.
func newPurgeNotice(bot string, req purgeRequest, at time.Time) purgeNotice {
	n := purgeNotice{ID: randomID(), Bot: bot, At: at.UnixNano()}
	if req.Contact != nil {
		d := contactDigest(bot, *req.Contact)
		n.Contact = hex.EncodeToString(d[:])
	}
	if req.Token != nil {
		d := tokenDigest(bot, *req.Token)
		n.Token = hex.EncodeToString(d[:])
	}
	return n
}

// markRef is the mark a notice sets.
func (n purgeNotice) markRef() (markRef, error) {
	ref := markRef{bot: n.Bot, scope: purgeBot, at: time.Unix(0, n.At)}
	if n.Bot == "" || n.At <= 0 {
		return ref, errors.New("purge notice without a bot or a time")
	}
	hexDigest := ""
	switch {
	case n.Contact != "" && n.Token != "":
		return ref, errors.New("purge notice with a contact and a token")
	case n.Contact != "":
		ref.scope, hexDigest = purgeContact, n.Contact
	case n.Token != "":
		ref.scope, hexDigest = purgeToken, n.Token
	default:
		return ref, nil
	}
	b, err := hex.DecodeString(hexDigest)
	if err != nil || len(b) != len(ref.digest) {
		return ref, errors.New("purge notice with a malformed digest")
	}
	copy(ref.digest[:], b)
	return ref, nil
}

// purge removes a purge's verdicts from this gateway: it marks them in the marks of
// every handler, and deletes a token's verdicts by key from their caches. Then it
// tells every shared cache the handlers use, which tells their fleets, and waits for
// their gateways. An error means that the fleet could not be told (this gateway is
// purged all the same, and the fleet is told once its shared cache is back).
func purge(ctx context.Context, handlers []*Handler, req purgeRequest) (purgeResult, error) {
	if len(handlers) == 0 {
		return purgeResult{}, nil
	}
	plan := planPurge(ctx, handlers, req)
	var notices []purgeNotice
	at := handlers[0].now()
	for _, bot := range plan.bots {
		n := newPurgeNotice(bot, req, at)
		ref, err := n.markRef()
		if err != nil {
			return purgeResult{}, err
		}
		for _, m := range plan.marks {
			m.set(ref)
		}
		notices = append(notices, n)
	}
	result := purgeResult{Purged: plan.removeLocal()}
	if len(plan.links) == 0 {
		return result, nil
	}
	gateways := 0
	result.Gateways = &gateways
	var errs []error
	for _, link := range plan.links {
		for i, n := range notices {
			confirmed, err := link.announce(ctx, n, plan.verdictKeys[link])
			if i == 0 {
				gateways += confirmed
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	handlers[0].env.metrics.observePurge(len(errs) == 0)
	if len(errs) > 0 {
		return result, fmt.Errorf("purged on this gateway, but the fleet could not be told through its shared cache (it will be once the shared cache is back): %w", errors.Join(errs...))
	}
	return result, nil
}

// purgePlan is what a purge touches in this process.
type purgePlan struct {
	// bots are the bot ids whose verdicts the purge covers: the one it names, and
	// `*` where `bot *` serves that id (its verdicts are cached under `*`).
	bots  []string
	marks []*purgeMarks
	// local are the keys of a token's verdicts in each cache.
	local       map[*caches][]string
	links       []*fleetLink
	verdictKeys map[*fleetLink][]string // in each shared cache
}

// planPurge finds what a purge touches in each handler.
func planPurge(ctx context.Context, handlers []*Handler, req purgeRequest) *purgePlan {
	plan := &purgePlan{local: map[*caches][]string{}, verdictKeys: map[*fleetLink][]string{}}
	for _, h := range handlers {
		if !slices.Contains(plan.marks, h.marks) {
			plan.marks = append(plan.marks, h.marks)
		}
		var link *fleetLink
		if h.shared != nil {
			link = h.shared.link
			if !slices.Contains(plan.links, link) {
				plan.links = append(plan.links, link)
			}
		}
		var b *botSettings
		if req.Bot != "*" {
			b, _ = h.lookupBot(ctx, req.Bot)
		}
		plan.addBot(req.Bot, b)
		if req.Token == nil || b == nil || b.off {
			continue
		}
		// The token's verdict without forwarded fields has a key that can be
		// computed; others are covered by the mark.
		key := identityKey(b, identityRequest{token: *req.Token, bot: req.Bot})
		if !slices.Contains(plan.local[h.caches], key) {
			plan.local[h.caches] = append(plan.local[h.caches], key)
		}
		if link != nil && !slices.Contains(plan.verdictKeys[link], sharedVerdictKey(key)) {
			plan.verdictKeys[link] = append(plan.verdictKeys[link], sharedVerdictKey(key))
		}
	}
	return plan
}

// addBot adds the bot id whose verdicts a purge naming id covers in a handler that
// resolves id to b: b's own id, `*` for `bot *`; id itself when the handler has no
// such bot.
func (plan *purgePlan) addBot(id string, b *botSettings) {
	if b != nil {
		id = b.id
	}
	if !slices.Contains(plan.bots, id) {
		plan.bots = append(plan.bots, id)
	}
}

// removeLocal deletes a token's verdicts from this gateway's caches, and counts them.
func (plan *purgePlan) removeLocal() int {
	removed := 0
	for c, keys := range plan.local {
		for _, key := range keys {
			if c.remove(key) {
				removed++
			}
		}
	}
	return removed
}

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

// Interface guards
var (
	_ caddy.Module      = (*PurgeAPI)(nil)
	_ caddy.AdminRouter = (*PurgeAPI)(nil)
)
