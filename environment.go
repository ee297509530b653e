package customauth

import (
	"context"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// environment is what bots, whitelists and API clients share within one config.
type environment struct {
	// ctx is the config's context, cancelled when the config is unloaded; background
	// work uses it.
	ctx     context.Context
	client  *http.Client
	metrics *metrics
	caches  *caches // the handler's cache; fetched whitelists live there too
	logger  *zap.Logger
	now     func() time.Time
	// refreshSlots bounds the background refreshes of remote values (remoteValue).
	refreshSlots callSlots

	warnedMu sync.Mutex
	warned   map[string]time.Time // when each key was last warned about
	// The warning budget: lines logged in the current window, and lines held back
	// since the last one logged.
	warnWindow   time.Time
	warnsLogged  int
	warnsDropped int
}

const (
	// warnInterval is the least time between two warnings about the same thing.
	warnInterval = time.Minute
	// maxWarnings is how many warning lines a handler writes per warnInterval. Keys
	// come from bot ids, which visitors choose, so the per-key limit alone does not
	// bound the log: a flood of made-up ids while bots_url is down would write one
	// line per id.
	maxWarnings = 100
	// maxWarnedKeys bounds the memory of which keys were warned about.
	maxWarnedKeys = 10000
)

// warn logs a warning about a failing API, at most once per warnInterval per key and
// at most maxWarnings times per warnInterval in all, so that an API that is down, or
// a flood of bot ids, does not flood the log. The first line after some were held
// back by the overall limit says how many, as `dropped`.
func (e *environment) warn(key, msg string, fields ...zap.Field) {
	now := e.now()
	e.warnedMu.Lock()
	if last, seen := e.warned[key]; seen && now.Sub(last) < warnInterval {
		e.warnedMu.Unlock()
		return
	}
	if len(e.warned) >= maxWarnedKeys {
		clear(e.warned)
	}
	e.warned[key] = now
	if now.Sub(e.warnWindow) >= warnInterval {
		e.warnWindow, e.warnsLogged = now, 0
	}
	if e.warnsLogged >= maxWarnings {
		e.warnsDropped++
		e.warnedMu.Unlock()
		return
	}
	e.warnsLogged++
	dropped := e.warnsDropped
	e.warnsDropped = 0
	e.warnedMu.Unlock()

	if dropped > 0 {
		fields = append(fields[:len(fields):len(fields)], zap.Int("dropped", dropped))
	}
	e.logger.Warn(msg, fields...)
}
