package customauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/goleak"
)

// clock is a settable clock for the handler.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// cachingHandler is a handler with its own cache (a size no other test uses) and a
// clock the test moves.
func cachingHandler(t *testing.T, api *identityAPI, clk *clock, bot *Bot) *Handler {
	if bot.AuthURL == "" {
		bot.AuthURL = api.URL + "/ca"
	}
	return provision(t, &Handler{
		CacheSize: defaultCacheSize,
		Bots:      map[string]*Bot{"shop": bot},
		now:       clk.Now,
	})
}

func verify(t *testing.T, h *Handler, token string) string {
	t.Helper()
	got := serve(t, h, widgetRequest("shop", token, ""))
	return got.placeholder("http.custom_auth.status") + "/" + got.placeholder("http.custom_auth.reason")
}

func TestConcurrentRequestsMakeOneCall(t *testing.T) {
	api := newIdentityAPI(t)
	h := cachingHandler(t, api, newClock(), &Bot{})
	var wg sync.WaitGroup
	results := make(chan string, 100)
	for range 100 {
		wg.Go(func() { results <- verify(t, h, "alice-token") })
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r != "verified/" {
			t.Fatalf("outcome %s", r)
		}
	}
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("100 concurrent requests made %d API calls, want 1", n)
	}
	for range 20 {
		if r := verify(t, h, "alice-token"); r != "verified/" {
			t.Fatalf("outcome %s", r)
		}
	}
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("20 more requests made %d API calls in all, want 1", n)
	}
}

// TestConcurrentRequestsMakeOneCallWithoutCaching: with cache_ttl 0 and negative_ttl 0
// nothing is cached, yet requests that arrive while a call for the same token is under
// way wait for it rather than calling again.
func TestConcurrentRequestsMakeOneCallWithoutCaching(t *testing.T) {
	api := newIdentityAPI(t)
	arrived := make(chan struct{}, 100)
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		arrived <- struct{}{}
		<-api.release
		return false
	})
	h := cachingHandler(t, api, newClock(), &Bot{CacheTTL: dur(0), NegativeTTL: dur(0)})
	const visitors = 50
	started := make(chan struct{}, visitors)
	results := make(chan string, visitors)
	for range visitors {
		go func() {
			started <- struct{}{}
			results <- verify(t, h, "alice-token")
		}()
	}
	for range visitors {
		<-started
	}
	<-arrived
	api.unblock()
	for range visitors {
		if r := <-results; r != "verified/" {
			t.Fatalf("outcome %s", r)
		}
	}
	// Each request on its own would be a call of its own (50); a request scheduled only
	// after the first call ended may start another.
	if n := api.calls.Load(); n > visitors/2 {
		t.Errorf("%d concurrent requests made %d API calls", visitors, n)
	}
	t.Logf("%d concurrent requests, %d API calls", visitors, api.calls.Load())
}

func TestCacheTTLs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bot       Bot
		token     string
		outcome   string
		advance   time.Duration
		wantCalls int64 // after: request, request, advance, request
	}{
		{"verified cached until cache_ttl", Bot{}, "alice-token", "verified/", 5*time.Minute - time.Second, 1},
		{"verified expires after cache_ttl", Bot{}, "alice-token", "verified/", 5 * time.Minute, 2},
		{"custom cache_ttl", Bot{CacheTTL: dur(time.Minute)}, "alice-token", "verified/", time.Minute, 2},
		{"cache_ttl 0 calls every time", Bot{CacheTTL: dur(0)}, "alice-token", "verified/", 0, 3},
		{"rejection cached for negative_ttl", Bot{}, "wrong-token", "fallback/rejected", 29 * time.Second, 1},
		{"rejection expires after negative_ttl", Bot{}, "wrong-token", "fallback/rejected", 30 * time.Second, 2},
		{"negative_ttl 0", Bot{NegativeTTL: dur(0)}, "wrong-token", "fallback/rejected", 0, 3},
		{"errors never cached", Bot{}, "boom-token", "fallback/error", 0, 3},
		{"malformed answers never cached", Bot{}, "garbage-token", "fallback/error", 0, 3},
		{"no-store not cached", Bot{}, "no-store-token", "verified/", 0, 3},
		{"max-age caps the TTL", Bot{}, "max-age-token", "verified/", 10 * time.Second, 2},
		{"max-age within it", Bot{}, "max-age-token", "verified/", 9 * time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := newIdentityAPI(t)
			clk := newClock()
			bot := tc.bot
			h := cachingHandler(t, api, clk, &bot)
			for range 2 {
				if r := verify(t, h, tc.token); r != tc.outcome {
					t.Fatalf("outcome %s, want %s", r, tc.outcome)
				}
			}
			clk.advance(tc.advance)
			if r := verify(t, h, tc.token); r != tc.outcome {
				t.Fatalf("outcome %s, want %s", r, tc.outcome)
			}
			if n := api.calls.Load(); n != tc.wantCalls {
				t.Errorf("API calls = %d, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestCacheKeyIncludesForwardedFields(t *testing.T) {
	api := newIdentityAPI(t)
	h := cachingHandler(t, api, newClock(), &Bot{Forward: []string{"email"}})
	serve(t, h, widgetRequest("shop", "alice-token", "", "X-User-Email", "b@example.com"))
	serve(t, h, widgetRequest("shop", "alice-token", "", "X-User-Email", "b@example.com"))
	serve(t, h, widgetRequest("shop", "alice-token", "", "X-User-Email", "B@example.com"))
	// Not forwarded, so not part of the key (the mismatch check still runs).
	got := serve(t, h, widgetRequest("shop", "alice-token", "", "X-User-Email", "b@example.com", "X-User-Id", "9"))
	if r := got.placeholder("http.custom_auth.reason"); r != "identity_mismatch" {
		t.Errorf("reason = %q, want identity_mismatch", r)
	}
	if n := api.calls.Load(); n != 2 {
		t.Errorf("API calls = %d, want 2", n)
	}
}

func TestReloadKeepsCache(t *testing.T) {
	api := newIdentityAPI(t)
	size := defaultCacheSize
	config := func(authURL string) *Handler {
		return &Handler{CacheSize: size, Bots: map[string]*Bot{"shop": {AuthURL: authURL}}}
	}
	first := provision(t, config(api.URL+"/ca"))
	verify(t, first, "alice-token")

	// Caddy provisions the new config before it cleans up the old one.
	second := provision(t, config(api.URL+"/ca"))
	if err := first.Cleanup(); err != nil {
		t.Fatal(err)
	}
	verify(t, second, "alice-token")
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("reload of the same config: API calls = %d, want 1", n)
	}

	changed := provision(t, config(api.URL+"/ca/v2"))
	verify(t, changed, "alice-token")
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("reload with a changed auth_url: API calls = %d, want 2", n)
	}
}

// TestUnrelatedHandlersHaveTheirOwnCaches: two handlers with the same cache_size but
// other bots never share a cache (nor its bound); the same handler after a reload does.
func TestUnrelatedHandlersHaveTheirOwnCaches(t *testing.T) {
	shop := provision(t, &Handler{Bots: map[string]*Bot{"shop": {Off: true}}})
	other := provision(t, &Handler{Bots: map[string]*Bot{"other": {Off: true}}})
	again := provision(t, &Handler{Bots: map[string]*Bot{"shop": {Off: true}}})
	if shop.caches == other.caches {
		t.Error("handlers with other bots share a cache")
	}
	if shop.caches != again.caches {
		t.Error("the same handler in the next config does not find its cache")
	}
}

func TestCacheClosedWithLastConfig(t *testing.T) {
	h := &Handler{}
	key := cachePoolKey(h.cacheOwner(), defaultCacheSize)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if n, ok := cachePool.References(key); !ok || n != 1 {
		t.Fatalf("references = %d, %v", n, ok)
	}
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, ok := cachePool.References(key); ok {
		t.Fatal("cache still in the pool after the last config went away")
	}
}

func TestCleanupOfHalfProvisionedHandler(t *testing.T) {
	for _, tc := range []struct {
		h       *Handler
		wantErr string
	}{
		{&Handler{}, ""},
		{&Handler{OnFail: "sometimes"}, "on_fail"},
		{&Handler{Bots: map[string]*Bot{"b": {AuthURL: "not a url"}}}, "auth_url"},
	} {
		h := tc.h
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("provision: %v, want an error about %q", err, tc.wantErr)
		}
		if err := h.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		cancel()
	}
}

// TestNoGoroutineLeftAfterCleanup: whatever the handler started, a background whitelist
// refresh still waiting for its API included, ends with the config.
func TestNoGoroutineLeftAfterCleanup(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	api := newIdentityAPI(t)
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	clk := newClock()
	h := &Handler{now: clk.Now, Bots: map[string]*Bot{"shop": {
		AuthURL:      api.URL,
		WhitelistURL: &WhitelistSource{URL: wl.URL},
	}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{"alice-token", "wrong-token", "boom-token"} {
		serve(t, h, widgetRequest("shop", token, "https://shop.example.com"))
	}
	// The list is now older than its refresh: the next request starts a background
	// refresh, which hangs on the whitelist API until the config goes away.
	wl.mu.Lock()
	wl.hang = make(chan struct{})
	wl.mu.Unlock()
	clk.advance(defaultWhitelistTTL + time.Second)
	serve(t, h, widgetRequest("shop", "alice-token", "https://shop.example.com"))
	select {
	case <-wl.hung:
	case <-time.After(10 * time.Second):
		t.Fatal("no background refresh started")
	}
	cancel()
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	api.Close()
	wl.Close()
}

// staticIdentifier answers every token with the same realistic contact, without HTTP,
// so that a test can fill the cache quickly through the real caching path.
type staticIdentifier struct{ res verdict }

func (s staticIdentifier) identify(context.Context, *botSettings, identityRequest) verdict {
	return s.res
}

// parsingIdentifier parses a realistic answer for every call, as the API client does,
// so that every cached identity has memory of its own.
type parsingIdentifier struct{}

func (parsingIdentifier) identify(_ context.Context, _ *botSettings, req identityRequest) verdict {
	return parseAnswer(200, []byte(`{"data":{"id":"`+req.token+`","name":"Nguyễn Văn B","email":"b@example.com",`+
		`"phone_number":"0912345678","country_code":"+84","avatar":"https://cdn.example.com/b.png","label":"VIP",`+
		`"metadata":{"order_id":"ORD-5578XZ","order_quantity":3}}}`), "id")
}

// TestCacheStaysWithinCacheSize sends distinct verified visitors through the real
// handler, with the identity API's answer parsed in-process (a small contact, as in
// the memory scenario of bench/), until the cache is full and evicting. The verdicts
// live outside the Go heap, so it measures what they cost in RAM: the live heap's
// growth after a garbage collection plus the pages of the store's mapped memory that
// the kernel holds (mincore), which is the process's RSS growth short of what the
// collector's pacing adds to the heap. Together they stay within cache_size, the
// heap's share is small (what the collector must scan and let grow), and the cache
// is full.
func TestCacheStaysWithinCacheSize(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 64MB cache")
	}
	size := defaultCacheSize
	visitors := 300_000
	if raceEnabled {
		visitors = 150_000 // the race detector makes each request ten times slower
	}
	h := provision(t, &Handler{CacheSize: size, Bots: map[string]*Bot{"shop": {AuthURL: "https://api.example.com/ca"}}})
	h.identities.(*cachedIdentifier).next = parsingIdentifier{}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	r := httptest.NewRequest(http.MethodPost, "/chat", nil)
	repl := caddyhttp.NewTestReplacer(r)
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)

	before := liveHeap()
	for i := range visitors {
		req := r.WithContext(ctx)
		req.Header = http.Header{"X-Bot-Id": {"shop"}, "X-Access-Token": {"visitor-" + strconv.Itoa(i)}}
		if err := h.ServeHTTP(nil, req, next); err != nil || req.Header.Get("X-Contact-Id") == "" {
			t.Fatalf("visitor %d not verified: %v", i, err)
		}
	}
	grown := liveHeap() - before
	resident, err := residentBytes(h.caches.blocks.mem)
	if err != nil {
		t.Fatal(err)
	}
	held := h.caches.used()
	t.Logf("%d visitors through a %.1f MB cache: live heap grew by %.1f MB, the store's memory holds %.1f MB, together %.2f× cache_size; the cache accounts %.1f MB",
		visitors, float64(size)/1e6, float64(grown)/1e6, float64(resident)/1e6, float64(grown+resident)/float64(size), float64(held)/1e6)
	if grown+resident > size {
		t.Errorf("heap growth %d + resident store %d bytes, over cache_size %d", grown, resident, size)
	}
	if grown > size/10 {
		t.Errorf("live heap grew by %d bytes: the verdicts are on the heap", grown)
	}
	if held < size*9/10 {
		t.Errorf("the cache holds %d of %d bytes: not full, the test proves nothing", held, size)
	}
}

// BenchmarkCacheParallel is the cached identity lookup under concurrency: the same few
// thousand visitors asked from every core.
func BenchmarkCacheParallel(b *testing.B) {
	res := parseAnswer(200, []byte(`{"data":`+aliceData+`}`), "id")
	caches, err := newCaches("bench-parallel", 64<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer caches.Destruct()
	ci := &cachedIdentifier{caches: caches, next: staticIdentifier{res}, metrics: processMetrics, now: time.Now}
	bt := &botSettings{id: "shop", cacheTTL: time.Hour, negativeTTL: time.Minute}
	requests := make([]identityRequest, 4096)
	for i := range requests {
		requests[i] = identityRequest{token: "token-" + strconv.Itoa(i)}
		ci.identify(context.Background(), bt, requests[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			ci.identify(context.Background(), bt, requests[i%len(requests)])
			i++
		}
	})
}
