package customauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func remoteBotsHandler(t *testing.T, bots *botsAPI, clk *clock, size int64) *Handler {
	return provision(t, &Handler{
		CacheSize: size,
		now:       clk.Now,
		BotsURL:   botsSource(bots),
		Bots:      map[string]*Bot{"listed": {Off: true}},
	})
}

func TestRemoteBot(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q,"whitelist":["shop.example.com"]}`, api.URL))
	clk := newClock()
	h := remoteBotsHandler(t, bots, clk, defaultCacheSize)

	if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
		t.Fatalf("remote bot: %s", o)
	}
	if o := botOutcome(t, h, "listed", "alice-token"); o != "fallback/disabled" {
		t.Errorf("listed bot: %s", o)
	}
	if o := botOutcome(t, h, "ghost", "alice-token"); o != "fallback/unknown_bot" {
		t.Errorf("remote 404: %s", o)
	}
	if n := bots.calls.Load(); n != 2 {
		t.Errorf("bots API calls = %d, want 2 (listed bots are not asked)", n)
	}
	bots.mu.Lock()
	key := bots.headers.Get("X-Api-Key")
	bots.mu.Unlock()
	if key != "backend-key" {
		t.Errorf("X-Api-Key = %q", key)
	}

	// Cached for ttl, 404s included.
	botOutcome(t, h, "remote", "alice-token")
	botOutcome(t, h, "ghost", "alice-token")
	if n := bots.calls.Load(); n != 2 {
		t.Errorf("bots API calls within ttl = %d, want 2", n)
	}

	// Settings changed at the backend take effect after ttl: the first request after
	// it is answered from the cache and refreshes them in the background.
	bots.set("remote", `{"off":true}`)
	clk.advance(59 * time.Second)
	if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
		t.Errorf("before ttl: %s", o)
	}
	clk.advance(time.Second)
	if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
		t.Errorf("first request after ttl: %s, want the cached settings", o)
	}
	waitForRefreshes(t, h)
	if o := botOutcome(t, h, "remote", "alice-token"); o != "fallback/disabled" {
		t.Errorf("after the refresh: %s", o)
	}
}

// waitForRefreshes waits until no background refresh of bot settings is under way.
func waitForRefreshes(t *testing.T, h *Handler) {
	t.Helper()
	eventually(t, "background refreshes", func() bool { return h.remoteBots.settings.refreshesUnderWay() == 0 })
}

func TestRemoteBotSettingsChangeNeverServesOldIdentity(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL+"/v1"))
	clk := newClock()
	h := remoteBotsHandler(t, bots, clk, defaultCacheSize)
	botOutcome(t, h, "remote", "alice-token")
	botOutcome(t, h, "remote", "alice-token")
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("identity API calls = %d, want 1", n)
	}
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL+"/v2"))
	clk.advance(time.Minute)
	botOutcome(t, h, "remote", "alice-token") // starts the refresh
	waitForRefreshes(t, h)
	botOutcome(t, h, "remote", "alice-token")
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("identity served from the old settings: API calls = %d, want 2", n)
	}
}

func TestRemoteBotBackendDown(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL))
	clk := newClock()
	h := remoteBotsHandler(t, bots, clk, defaultCacheSize)
	if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
		t.Fatal(o)
	}
	bots.setDown(true)
	clk.advance(time.Hour)
	for range 3 {
		if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
			t.Fatalf("last known settings not served while the backend is down: %s", o)
		}
	}
	if o := botOutcome(t, h, "never-fetched", "alice-token"); o != "fallback/error" {
		t.Errorf("bot never fetched: %s", o)
	}
}

func TestRemoteBotConcurrentFirstRequests(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL))
	h := remoteBotsHandler(t, bots, newClock(), defaultCacheSize)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
				t.Errorf("outcome %s", o)
			}
		})
	}
	wg.Wait()
	if n := bots.calls.Load(); n != 1 {
		t.Errorf("100 concurrent first requests made %d fetches, want 1", n)
	}
}

func TestRemoteBotInvalidSettings(t *testing.T) {
	bots := newBotsAPI(t)
	for id, settings := range map[string]string{
		"bad-url":      `{"auth_url":"ftp://api.example.com/ca"}`,
		"no-url":       `{"forward":["user_id"]}`,
		"bad-identify": `{"auth_url":"https://api.example.com/ca","identify_by":"nickname"}`,
		"bad-forward":  `{"auth_url":"https://api.example.com/ca","forward":["password"]}`,
		"not-json":     `<html>`,
		"too-large":    `{"auth_url":"https://api.example.com/ca","whitelist":["` + strings.Repeat("a", maxBotSettingsSize) + `"]}`,
		"env-leak":     `{"auth_url":"https://{env.HOME}.example.com/ca"}`,
	} {
		bots.set(id, settings)
	}
	h := remoteBotsHandler(t, bots, newClock(), defaultCacheSize)
	for _, id := range []string{"bad-url", "no-url", "bad-identify", "bad-forward", "not-json", "too-large", "env-leak"} {
		if o := botOutcome(t, h, id, "alice-token"); o != "fallback/error" {
			t.Errorf("%s: %s, want fallback/error", id, o)
		}
	}
}

func TestRemoteBotHostileIDs(t *testing.T) {
	bots := newBotsAPI(t)
	h := remoteBotsHandler(t, bots, newClock(), defaultCacheSize)
	for _, tc := range []struct {
		id      string
		fetched bool
		path    string
	}{
		{"../admin", true, "/bots/..%2Fadmin"},
		{"%2F", true, "/bots/%252F"},
		{"a/b", true, "/bots/a%2Fb"},
		{"a?b#c", true, "/bots/a%3Fb%23c"},
		{"..", false, ""},
		{".", false, ""},
		{"x\r\nHost: evil", false, ""},
		{"tab\tid", false, ""},
		{strings.Repeat("a", 10_000), false, ""},
	} {
		before := bots.calls.Load()
		r := widgetRequest("", "alice-token", "")
		r.Header["X-Bot-Id"] = []string{tc.id}
		got := serve(t, h, r)
		if reason := got.placeholder("http.custom_auth.reason"); reason != "unknown_bot" {
			t.Errorf("%q: reason %q", tc.id, reason)
		}
		fetched := bots.calls.Load() > before
		if fetched != tc.fetched {
			t.Errorf("%q: fetched = %v, want %v", tc.id, fetched, tc.fetched)
			continue
		}
		if fetched {
			bots.mu.Lock()
			path := bots.paths[len(bots.paths)-1]
			bots.mu.Unlock()
			if path != tc.path {
				t.Errorf("%q: backend asked for %q, want %q", tc.id, path, tc.path)
			}
		}
	}
}

// TestManyRemoteBotsStayWithinCacheSize loads 10,000 distinct remote bots into a small
// cache and checks the cache's accounted cost never passes cache_size.
func TestManyRemoteBotsStayWithinCacheSize(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	settings := fmt.Sprintf(`{"auth_url":%q,"whitelist":["shop.example.com"]}`, api.URL)
	bots.mu.Lock()
	for i := range 10_000 {
		bots.settings[fmt.Sprintf("bot-%d", i)] = settings
	}
	bots.mu.Unlock()
	const size = 1 << 20
	h := remoteBotsHandler(t, bots, newClock(), size)
	for i := range 10_000 {
		if o := botOutcome(t, h, fmt.Sprintf("bot-%d", i), ""); o != "fallback/missing_token" {
			t.Fatalf("bot-%d: %s", i, o)
		}
	}
	used := h.caches.used()
	if used > size || used <= 0 {
		t.Errorf("cache holds %d of %d bytes", used, size)
	}
	t.Logf("10,000 bots: cache holds %d bytes of %d", used, size)
}

// TestRemoteBotRefreshNeverBlocks: once a bot's settings are cached, a backend that
// hangs never holds up its visitors: stale settings answer at once while one refresh
// per bot runs in the background, and its answer applies when it comes.
func TestRemoteBotRefreshNeverBlocks(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL))
	clk := newClock()
	source := botsSource(bots)
	source.Timeout = caddy.Duration(time.Hour) // a blocked visitor would wait for an hour
	h := provision(t, &Handler{now: clk.Now, BotsURL: source})
	if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
		t.Fatal(o)
	}

	bots.hangRequests()
	bots.set("remote", `{"off":true}`)
	clk.advance(time.Minute)
	for i := range 20 {
		o := within(t, fmt.Sprintf("request %d while the refresh hangs", i),
			outcomeAsync(t, h, widgetRequest("remote", "alice-token", "https://shop.example.com")))
		if o != "verified/" {
			t.Fatalf("request %d: %s, want the cached settings", i, o)
		}
	}
	within(t, "the background refresh", bots.hung)
	if n := bots.calls.Load(); n != 2 {
		t.Errorf("20 requests of a stale bot made %d settings requests while one hung, want 1 refresh", n)
	}

	bots.release()
	eventually(t, "the refreshed settings", func() bool { return botOutcome(t, h, "remote", "") == "fallback/disabled" })
	if n := bots.calls.Load(); n != 2 {
		t.Errorf("settings requests = %d, want 2", n)
	}
}

// TestRemoteBotRefreshStopsWithConfig: a background refresh belongs to the config and
// ends when the config is unloaded.
func TestRemoteBotRefreshStopsWithConfig(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL))
	clk := newClock()
	source := botsSource(bots)
	source.Timeout = caddy.Duration(time.Hour)
	h := &Handler{now: clk.Now, logger: zap.NewNop(), BotsURL: source}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Cleanup()
	botOutcome(t, h, "remote", "alice-token")

	bots.hangRequests()
	clk.advance(time.Minute)
	within(t, "a request of a stale bot", outcomeAsync(t, h, widgetRequest("remote", "alice-token", "")))
	within(t, "the background refresh", bots.hung)
	cancel()
	within(t, "the refresh to end with its config", bots.abandoned)
}

// TestRemoteBotFailedFirstFetchIsRemembered: a bot whose settings could not be fetched
// falls back with error at once, without asking, for holdBackAfterFailure.
func TestRemoteBotFailedFirstFetchIsRemembered(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL))
	bots.setDown(true)
	clk := newClock()
	h := remoteBotsHandler(t, bots, clk, defaultCacheSize)
	for range 5 {
		if o := botOutcome(t, h, "remote", "alice-token"); o != "fallback/error" {
			t.Fatalf("backend down: %s", o)
		}
	}
	clk.advance(holdBackAfterFailure - time.Millisecond)
	botOutcome(t, h, "remote", "alice-token")
	if n := bots.calls.Load(); n != 1 {
		t.Fatalf("the backend was asked %d times within the retry delay, want 1", n)
	}

	bots.setDown(false)
	clk.advance(time.Millisecond)
	if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
		t.Errorf("after the retry delay: %s", o)
	}
	if n := bots.calls.Load(); n != 2 {
		t.Errorf("settings requests = %d, want 2", n)
	}
}

// TestRemoteBotFirstFetchWaitsAndVisitorMayLeave: the first visitors of a bot wait
// for one fetch; one who leaves stops waiting at once, and the others still get the
// answer.
func TestRemoteBotFirstFetchWaitsAndVisitorMayLeave(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL))
	source := botsSource(bots)
	source.Timeout = caddy.Duration(time.Hour)
	h := provision(t, &Handler{now: newClock().Now, BotsURL: source})
	bots.hangRequests()

	ctx, leave := context.WithCancel(context.Background())
	leaving := outcomeAsync(t, h, widgetRequest("remote", "alice-token", "").WithContext(ctx))
	within(t, "the first fetch", bots.hung)
	staying := outcomeAsync(t, h, widgetRequest("remote", "alice-token", ""))
	leave()
	if o := within(t, "the visitor who left", leaving); o != "fallback/error" {
		t.Errorf("visitor who left: %s", o)
	}
	select {
	case o := <-staying:
		t.Fatalf("a visitor got %s before the backend answered", o)
	default:
	}
	bots.release()
	if o := within(t, "the visitor who stayed", staying); o != "verified/" {
		t.Errorf("visitor who stayed: %s", o)
	}
	if n := bots.calls.Load(); n != 1 {
		t.Errorf("settings requests = %d, want 1", n)
	}
}

// TestRemoteBotTimeout: `timeout` bounds the wait for a bot's first settings.
func TestRemoteBotTimeout(t *testing.T) {
	bots := newBotsAPI(t)
	bots.hangRequests()
	source := botsSource(bots)
	source.Timeout = caddy.Duration(50 * time.Millisecond)
	h := provision(t, &Handler{BotsURL: source})
	// Less than the default timeout of 3s, far more than 50ms.
	done := outcomeAsync(t, h, widgetRequest("remote", "alice-token", ""))
	select {
	case o := <-done:
		if o != "fallback/error" {
			t.Errorf("hanging backend: %s", o)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the settings request outlived bots_url's timeout")
	}
}

func TestBotsSourceTimeoutConfig(t *testing.T) {
	d := caddyfile.NewTestDispenser(`custom_auth {
		bots_url https://chat.example.com/api/bots {
			timeout 750ms
		}
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.BotsURL.Timeout != caddy.Duration(750*time.Millisecond) {
		t.Errorf("timeout = %v", h.BotsURL.Timeout)
	}
	for _, bad := range []string{"timeout", "timeout 1s 2s", "timeout soon", "timeout -1s"} {
		d := caddyfile.NewTestDispenser("custom_auth {\nbots_url https://chat.example.com {\n" + bad + "\n}\n}")
		if err := new(Handler).UnmarshalCaddyfile(d); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	var fromJSON BotsSource
	if err := json.Unmarshal([]byte(`{"url":"https://chat.example.com","timeout":"2s"}`), &fromJSON); err != nil || fromJSON.Timeout != caddy.Duration(2*time.Second) {
		t.Errorf("JSON timeout = %v, %v", fromJSON.Timeout, err)
	}
	h = Handler{BotsURL: &BotsSource{URL: "https://chat.example.com", Timeout: -1}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("negative timeout: %v", err)
	}
	h.Cleanup()
}

// TestRemoteBotRefreshesAreBounded: however many cached bots go stale while the
// backend hangs, at most maxBackgroundRefreshes refreshes are under way.
func TestRemoteBotRefreshesAreBounded(t *testing.T) {
	bots := newBotsAPI(t)
	bots.anyBot = `{"off":true}`
	clk := newClock()
	source := botsSource(bots)
	source.Timeout = caddy.Duration(time.Hour)
	h := provision(t, &Handler{now: clk.Now, BotsURL: source})
	const many = maxBackgroundRefreshes + 8
	for i := range many {
		botOutcome(t, h, fmt.Sprintf("bot-%d", i), "")
	}

	bots.hangRequests()
	clk.advance(time.Minute)
	for range 2 {
		for i := range many {
			if o := botOutcome(t, h, fmt.Sprintf("bot-%d", i), ""); o != "fallback/disabled" {
				t.Fatalf("bot-%d: %s", i, o)
			}
		}
	}
	// A refresh is under way from the request that starts it until it ends, and these
	// hang.
	underWay := h.remoteBots.settings.refreshesUnderWay()
	if underWay != maxBackgroundRefreshes {
		t.Errorf("%d refreshes under way, want %d", underWay, maxBackgroundRefreshes)
	}
	for i := range maxBackgroundRefreshes {
		within(t, fmt.Sprintf("refresh %d", i), bots.hung)
	}
}

// TestRemoteBotCostMatchesHeap compares remoteBotCost with the heap that cached bot
// settings really hold, from a typical answer to one with a long manual whitelist:
// never less, and not much more.
func TestRemoteBotCostMatchesHeap(t *testing.T) {
	// Every bot has URLs and an id of its own, so that what the process keeps per API
	// or per bot (a breaker, a metric series) is new, as for a bot never seen.
	run := time.Now().UnixNano()
	for _, tc := range []struct{ whitelist, bots int }{{0, 1000}, {2, 1000}, {100, 200}, {1500, 20}} {
		c, err := newCaches(fmt.Sprintf("bot-cost-%d", tc.whitelist), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		env := &environment{ctx: t.Context(), metrics: newProcessMetrics(), caches: c, now: time.Now, warned: map[string]time.Time{}}
		tenant, err := newTenantPolicy(&BotsSource{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rb := &remoteBots{knownFields: map[string]bool{"user_id": true, "email": true, "phone_number": true}, env: env, tenant: tenant}
		answers := make([][]byte, tc.bots)
		for i := range answers {
			entries := make([]string, tc.whitelist)
			for j := range entries {
				entries[j] = fmt.Sprintf(`"shop-%d.tenant-%d.example.com"`, j, i)
			}
			tenant := fmt.Sprintf("%d-%d-%d", run, tc.whitelist, i)
			answers[i] = fmt.Appendf(nil, `{"auth_url":"https://api.tenant-%s.example.com/ca","auth_headers":{"Authorization":"Bearer s3cret-%d"},`+
				`"forward":["user_id","email"],"identify_by":"id","timeout":"3s","cache_ttl":"5m","whitelist":[%s],`+
				`"whitelist_url":{"url":"https://api.tenant-%s.example.com/domains","headers":{"X-Key":"k"},"refresh":"5m"}}`,
				tenant, i, strings.Join(entries, ","), tenant)
		}
		now := time.Now()
		before := liveHeap()
		var cost int64
		for i, settings := range answers {
			id := fmt.Sprintf("bot-%d-%d", tc.whitelist, i)       // a new metric series, as for a new bot
			answer := &remoteBot{settings: bytes.Clone(settings)} // as read from the backend
			if answer.bot, answer.invalid = rb.parse(id, answer.settings); answer.invalid != nil {
				t.Fatal(answer.invalid)
			}
			cost += remoteBotCost(answer)
			c.store("bot\x00"+id, answer, remoteBotCost(answer), now, now)
		}
		held := liveHeap() - before
		runtime.KeepAlive(answers)
		c.Destruct()
		t.Logf("%4d whitelist entries, %5d-byte answer: %6d bytes held, cost %6d (%.2f×)",
			tc.whitelist, len(answers[0]), held/int64(tc.bots), cost/int64(tc.bots), float64(cost)/float64(held))
		if cost < held || cost > held*3/2 {
			t.Errorf("%d whitelist entries: cost %d for %d bytes held; want between 1× and 1.5×", tc.whitelist, cost, held)
		}
	}
}

// TestWarningsBoundedUnderBotIDFlood: 3,000 made-up bot ids while bots_url is down
// write at most maxWarnings lines a minute; the next line says how many were dropped.
func TestWarningsBoundedUnderBotIDFlood(t *testing.T) {
	bots := newBotsAPI(t)
	bots.setDown(true)
	core, logs := observer.New(zapcore.WarnLevel)
	clk := newClock()
	h := provision(t, &Handler{now: clk.Now, logger: zap.New(core), BotsURL: botsSource(bots)})
	const flood = 3000
	for i := range flood {
		if o := botOutcome(t, h, fmt.Sprintf("flood-%d", i), "alice-token"); o != "fallback/error" {
			t.Fatalf("flood-%d: %s", i, o)
		}
	}
	if n := logs.Len(); n != maxWarnings {
		t.Errorf("%d bot ids while bots_url was down: %d warning lines, want %d", flood, n, maxWarnings)
	}
	for _, entry := range logs.All() {
		if _, ok := entry.ContextMap()["dropped"]; ok {
			t.Errorf("a line within the budget says lines were dropped: %v", entry.ContextMap())
		}
	}

	clk.advance(warnInterval)
	botOutcome(t, h, "after-the-flood", "alice-token")
	last := logs.All()[logs.Len()-1].ContextMap()
	if last["bot"] != "after-the-flood" || last["dropped"] != int64(flood-maxWarnings) {
		t.Errorf("the first line of the next minute: %v, want bot after-the-flood and dropped %d", last, flood-maxWarnings)
	}
}

// TestRemoteBotAfterAReload: a reload keeps the cache, and with it the remote bots the
// replaced config prepared; their whitelists go on refreshing under the new config.
func TestRemoteBotAfterAReload(t *testing.T) {
	api := newIdentityAPI(t)
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q,"whitelist_url":{"url":%q,"refresh":"1m"}}`, api.URL, wl.URL))
	clk := newClock()
	config := func() (*Handler, context.CancelFunc) {
		h := &Handler{now: clk.Now, logger: zap.NewNop(), BotsURL: botsSource(bots)}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		return h, cancel
	}
	old, cancelOld := config()
	if o := botOutcome(t, old, "remote", "alice-token"); o != "verified/" {
		t.Fatalf("before the reload: %s", o)
	}
	// Caddy provisions the new config before it unloads the old one.
	current, cancelCurrent := config()
	defer func() {
		cancelCurrent()
		current.Cleanup()
	}()
	cancelOld()
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	fetched := wl.calls.Load()
	clk.advance(2 * time.Minute) // the list is due for a refresh, the settings are not
	if o := botOutcome(t, current, "remote", "alice-token"); o != "verified/" {
		t.Fatalf("after the reload: %s", o)
	}
	eventually(t, "the whitelist refreshed under the new config", func() bool { return wl.calls.Load() > fetched })
}

// TestRemoteBotEvictedAtOnce: a remote bot whose settings leave the cache (replaced
// by changed settings, or deleted) leaves the breaker_open gauge and ends its
// background work at once, with no garbage collection; unchanged settings keep the
// bot, its breaker and its work.
func TestRemoteBotEvictedAtOnce(t *testing.T) {
	api := newIdentityAPI(t)
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	bots := newBotsAPI(t)
	settings := func(failures int) string {
		return fmt.Sprintf(`{"auth_url":%q,"cache_ttl":0,"negative_ttl":0,"whitelist_url":{"url":%q},"circuit_breaker":{"failures":%d}}`,
			api.URL, wl.URL, failures)
	}
	bots.set("flaky", settings(1))
	clk := newClock()
	h, registry := handlerWithRegistry(t, &Handler{now: clk.Now, BotsURL: botsSource(bots)})
	breakerOpen := func() float64 { return gathered(t, registry, "caddy_custom_auth_breaker_open", "flaky") }
	key := h.remoteBots.cachePrefix + "flaky"
	cached := func() *remoteBot {
		e, ok := h.caches.entry(key)
		if !ok {
			return nil
		}
		return e.value.(*kept[*remoteBot]).value
	}

	botOutcome(t, h, "flaky", "boom-token")
	if got := breakerOpen(); got != 1 {
		t.Fatalf("breaker tripped: breaker_open = %v", got)
	}
	first := cached()
	clk.advance(time.Minute) // unchanged settings: the same bot
	botOutcome(t, h, "flaky", "")
	waitForRefreshes(t, h)
	if cached() != first || breakerOpen() != 1 || first.bot.remoteList.list.background.Err() != nil {
		t.Fatalf("unchanged settings replaced the bot: breaker_open = %v", breakerOpen())
	}

	bots.set("flaky", settings(2))
	clk.advance(time.Minute)
	botOutcome(t, h, "flaky", "")
	waitForRefreshes(t, h)
	if cached() == first {
		t.Fatal("changed settings did not replace the bot")
	}
	if got := breakerOpen(); got != 0 {
		t.Errorf("the replaced bot's breaker still counts: breaker_open = %v", got)
	}
	if first.bot.remoteList.list.background.Err() == nil {
		t.Error("the replaced bot's background work goes on")
	}

	for range 2 {
		botOutcome(t, h, "flaky", "boom-token")
	}
	second := cached()
	if got := breakerOpen(); got != 1 {
		t.Fatalf("second bot's breaker tripped: breaker_open = %v", got)
	}
	h.caches.remove(key)
	if got := breakerOpen(); got != 0 || second.bot.remoteList.list.background.Err() == nil {
		t.Errorf("deleted bot: breaker_open = %v, background work ended: %v", got, second.bot.remoteList.list.background.Err() != nil)
	}
}

// parse checks a bot settings answer like a bot block of the config, and bounds it as
// a tenant's (newTenantPolicy).
func (rb *remoteBots) parse(id string, settings []byte) (*botSettings, error) {
	return parseBot(id, settings, rb.knownFields, rb.tenant, rb.env)
}

// TestRemoteBotAdoptedOnce: after a reload, visitors who find a remote bot the replaced
// config prepared all get the one bot the new config adopts, even those who read the
// cache before it did.
func TestRemoteBotAdoptedOnce(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL))
	config := func() *Handler {
		h := &Handler{logger: zap.NewNop(), BotsURL: botsSource(bots)}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(func() { cancel(); h.Cleanup() })
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		return h
	}
	old := config()
	if b, _ := old.lookupBot(t.Context(), "remote"); b == nil {
		t.Fatal("the first config has no remote bot")
	}
	rb := config().remoteBots
	key := rb.cachePrefix + "remote"
	// Two visitors read the old config's bot before either adopts it.
	stale, err := rb.settings.get(t.Context(), key)
	if err != nil || stale.env == rb.env {
		t.Fatalf("the cached bot: %v, prepared for the new config %v", err, stale != nil && stale.env == rb.env)
	}
	first, second := rb.adopted("remote", key, stale), rb.adopted("remote", key, stale)
	if first != second || first.gone.Load() {
		t.Errorf("the visitors got bots %p and %p (the first gone: %v): the bot was adopted twice", first, second, first.gone.Load())
	}
	if cached, _ := rb.settings.get(t.Context(), key); cached != first {
		t.Errorf("the cache holds %p, the visitors got %p", cached, first)
	}
	if bots.calls.Load() != 1 {
		t.Errorf("bots_url asked %d times, want 1: adopting a bot fetches nothing", bots.calls.Load())
	}
}
