package customauth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

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
	result, err := purgeHandlers(ctx, runningHandlers(), req)
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

// purgeHandlers removes a purge's verdicts from this gateway: it marks them in the marks of
// every handler, and deletes a token's verdicts by key from their caches. Then it
// tells every shared cache the handlers use, which tells their fleets, and waits for
// their gateways. An error means that the fleet could not be told (this gateway is
// purged all the same, and the fleet is told once its shared cache is back).
func purgeHandlers(ctx context.Context, handlers []*Handler, req purgeRequest) (purgeResult, error) {
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
			confirmed, err := link.purges.announce(ctx, n, plan.verdictKeys[link])
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
		key := identityKey(b, identityRequest{token: *req.Token})
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

// Interface guards
var (
	_ caddy.Module      = (*PurgeAPI)(nil)
	_ caddy.AdminRouter = (*PurgeAPI)(nil)
)
