package customauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// remoteWhitelist is a bot's whitelist fetched from its whitelist_url. It is fetched on
// first need; once older than `refresh`, the next request starts a refresh in the
// background and is answered from the last good list, which keeps serving while
// refreshes fail. A list never fetched allows nothing.
type remoteWhitelist struct {
	bot     string
	url     string
	headers http.Header
	refresh time.Duration
	timeout time.Duration
	client  *http.Client
	env     *environment

	list       atomic.Pointer[fetchedList]
	fetching   sync.Mutex  // one fetch at a time
	refreshing atomic.Bool // a background refresh is under way
	// retryAt holds back fetches after a failure, so an API that is down is not
	// asked again by every request.
	retryAt atomic.Int64
}

type fetchedList struct {
	list      *whitelist
	fetchedAt time.Time
}

// maxWhitelistSize bounds a whitelist answer.
const maxWhitelistSize = 1 << 20

// whitelistRetryDelay is how long a failed fetch holds back the next one.
const whitelistRetryDelay = 5 * time.Second

func newRemoteWhitelist(botID string, cfg *WhitelistSource, timeout time.Duration, expand func(string) string, client *http.Client, env *environment) (*remoteWhitelist, error) {
	rw := &remoteWhitelist{bot: botID, url: expand(cfg.URL), timeout: timeout, client: client, env: env}
	if err := checkURL(rw.url); err != nil {
		return nil, err
	}
	var err error
	if rw.headers, err = headerValues(cfg.Headers, expand); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if rw.refresh, err = durationOrDefault("refresh", cfg.Refresh, defaultWhitelistTTL); err != nil {
		return nil, err
	}
	return rw, nil
}

func (rw *remoteWhitelist) allows(ctx context.Context, origin string) bool {
	fl := rw.list.Load()
	if fl == nil {
		fl = rw.fetchFirst(ctx)
		if fl == nil {
			return false
		}
	} else if rw.env.now().Sub(fl.fetchedAt) >= rw.refresh {
		rw.refreshInBackground()
	}
	return fl.list.allows(origin)
}

// fetchFirst fetches the list for the first time; concurrent requests wait for the
// same fetch.
func (rw *remoteWhitelist) fetchFirst(ctx context.Context) *fetchedList {
	rw.fetching.Lock()
	defer rw.fetching.Unlock()
	if fl := rw.list.Load(); fl != nil {
		return fl
	}
	if rw.env.now().UnixNano() < rw.retryAt.Load() {
		return nil
	}
	// Other requests wait for this fetch: the first visitor leaving must not cancel
	// it (and hold back the next fetch); the bot's timeout bounds it.
	rw.update(context.WithoutCancel(ctx))
	return rw.list.Load()
}

func (rw *remoteWhitelist) refreshInBackground() {
	if !rw.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer rw.refreshing.Store(false)
		rw.fetching.Lock()
		defer rw.fetching.Unlock()
		if fl := rw.list.Load(); fl != nil && rw.env.now().Sub(fl.fetchedAt) < rw.refresh {
			return
		}
		if rw.env.now().UnixNano() < rw.retryAt.Load() {
			return
		}
		rw.update(rw.env.ctx)
	}()
}

// update fetches the list and keeps it if it is good.
func (rw *remoteWhitelist) update(ctx context.Context) {
	entries, err := rw.fetch(ctx)
	if err != nil {
		rw.retryAt.Store(rw.env.now().Add(whitelistRetryDelay).UnixNano())
		rw.env.metrics.observeWhitelistRefreshError(rw.bot)
		rw.env.warn("whitelist_url:"+rw.bot, "fetching whitelist failed; keeping the last good list",
			zap.String("bot", rw.bot), zap.Error(err))
		return
	}
	list, err := compileWhitelist(entries)
	if err != nil {
		rw.env.warn("whitelist_url-entries:"+rw.bot, "whitelist has invalid entries; they are ignored",
			zap.String("bot", rw.bot), zap.Error(err))
	}
	rw.list.Store(&fetchedList{list: list, fetchedAt: rw.env.now()})
}

func (rw *remoteWhitelist) fetch(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, rw.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rw.url, nil)
	if err != nil {
		return nil, err
	}
	for name, values := range rw.headers {
		req.Header[name] = values
	}
	req.Header.Set("Accept", "application/json")
	resp, err := rw.client.Do(req)
	if err != nil {
		return nil, redactURLError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("whitelist API answered %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxWhitelistSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxWhitelistSize {
		return nil, fmt.Errorf("whitelist answer is over %d bytes", maxWhitelistSize)
	}
	return parseWhitelistAnswer(body)
}
