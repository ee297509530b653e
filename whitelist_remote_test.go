package customauth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func whitelistHandler(t *testing.T, wl *whitelistAPI, clk *clock, manual ...string) (*Handler, *identityAPI) {
	return whitelistHandlerSized(t, wl, clk, defaultCacheSize, manual...)
}

func whitelistHandlerSized(t *testing.T, wl *whitelistAPI, clk *clock, size int64, manual ...string) (*Handler, *identityAPI) {
	api := newIdentityAPI(t)
	h := provision(t, &Handler{
		CacheSize: size,
		now:       clk.Now,
		Bots: map[string]*Bot{"shop": {
			AuthURL:   api.URL,
			Whitelist: manual,
			WhitelistURL: &WhitelistSource{
				URL:     wl.URL + "/domains",
				Headers: map[string]string{"X-Key": "k1"},
				Refresh: caddy.Duration(time.Minute),
			},
		}},
	})
	return h, api
}

func originOutcome(t *testing.T, h *Handler, origin string) string {
	t.Helper()
	return serve(t, h, widgetRequest("shop", "alice-token", origin)).placeholder("http.custom_auth.reason")
}

func TestWhitelistURLShapes(t *testing.T) {
	for _, body := range []string{
		`["shop.example.com", "*.example.org"]`,
		`{"domains": ["shop.example.com", "*.example.org"]}`,
		`{"data": ["shop.example.com", "*.example.org"]}`,
	} {
		t.Run(body, func(t *testing.T) {
			wl := newWhitelistAPI(t, body)
			h, _ := whitelistHandler(t, wl, newClock())
			if r := originOutcome(t, h, "https://a.example.org"); r != "" {
				t.Errorf("listed origin: reason %q", r)
			}
			if r := originOutcome(t, h, "https://example.org"); r != "domain_not_allowed" {
				t.Errorf("unlisted origin: reason %q", r)
			}
			wl.mu.Lock()
			key := wl.headers.Get("X-Key")
			wl.mu.Unlock()
			if key != "k1" {
				t.Errorf("X-Key header = %q", key)
			}
		})
	}
}

func TestWhitelistURLFetchedOnFirstNeedOnce(t *testing.T) {
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	h, _ := whitelistHandler(t, wl, newClock())
	if n := wl.calls.Load(); n != 0 {
		t.Fatalf("fetched %d times before any request", n)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if r := originOutcome(t, h, "https://shop.example.com"); r != "" {
				t.Errorf("reason %q", r)
			}
		})
	}
	wg.Wait()
	if n := wl.calls.Load(); n != 1 {
		t.Errorf("50 concurrent first requests fetched %d times, want 1", n)
	}
}

func TestWhitelistURLKeepsLastGoodList(t *testing.T) {
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	clk := newClock()
	h, _ := whitelistHandler(t, wl, clk)
	if r := originOutcome(t, h, "https://shop.example.com"); r != "" {
		t.Fatalf("reason %q", r)
	}

	wl.answer(http.StatusInternalServerError, "down")
	clk.advance(time.Minute)
	originOutcome(t, h, "https://shop.example.com") // starts a refresh, which fails
	list := &h.bots["shop"].remoteList.list
	eventually(t, "the failed refresh", func() bool { return wl.calls.Load() == 2 && list.refreshesUnderWay() == 0 })
	for range 3 {
		if r := originOutcome(t, h, "https://shop.example.com"); r != "" {
			t.Fatalf("last good list not served while the API is down: reason %q", r)
		}
	}

	// Back up, with a new list: it replaces the old one on the next refresh.
	wl.answer(http.StatusOK, `["new.example.com"]`)
	clk.advance(time.Minute)
	originOutcome(t, h, "https://new.example.com")
	eventually(t, "the new list", func() bool { return originOutcome(t, h, "https://new.example.com") == "" })
	if r := originOutcome(t, h, "https://shop.example.com"); r != "domain_not_allowed" {
		t.Errorf("old entry still allowed: reason %q", r)
	}
}

// TestCacheLookupsCountedByCache: a bot from bots_url with a whitelist_url, asked
// twice, misses then hits each of the three caches that cache_requests_total names:
// bots, whitelist and identity.
func TestCacheLookupsCountedByCache(t *testing.T) {
	api := newIdentityAPI(t)
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	bots := newBotsAPI(t)
	bots.set("shop", fmt.Sprintf(`{"auth_url":%q,"whitelist_url":{"url":%q}}`, api.URL, wl.URL))
	m := newProcessMetrics()
	h := provision(t, &Handler{metrics: m, BotsURL: botsSource(bots)})
	for range 2 {
		if o := botOutcome(t, h, "shop", "alice-token"); o != "verified/" {
			t.Fatalf("outcome %s", o)
		}
	}
	for _, cache := range []string{"bots", "whitelist", "identity"} {
		if hits, misses := counter(m.cacheRequests, cache, "hit"), counter(m.cacheRequests, cache, "miss"); hits != 1 || misses != 1 {
			t.Errorf("cache %s: %v hits and %v misses, want 1 and 1", cache, hits, misses)
		}
	}
}

func TestWhitelistURLNeverFetched(t *testing.T) {
	wl := newWhitelistAPI(t, `unused`)
	wl.answer(http.StatusServiceUnavailable, "")
	clk := newClock()
	h, api := whitelistHandler(t, wl, clk)
	for range 3 {
		if r := originOutcome(t, h, "https://shop.example.com"); r != "domain_not_allowed" {
			t.Fatalf("reason %q, want domain_not_allowed", r)
		}
	}
	if n := wl.calls.Load(); n != 1 {
		t.Errorf("a failing whitelist API was asked %d times within the retry delay", n)
	}
	if n := api.calls.Load(); n != 0 {
		t.Errorf("identity API called %d times for a disallowed origin", n)
	}
	wl.answer(http.StatusOK, `{"domains":["shop.example.com"]}`)
	clk.advance(holdBackAfterFailure)
	if r := originOutcome(t, h, "https://shop.example.com"); r != "" {
		t.Errorf("after the API came back: reason %q", r)
	}
}

func TestWhitelistURLWithManualList(t *testing.T) {
	wl := newWhitelistAPI(t, `["fetched.example.com", "bad..entry", "*"]`)
	h, _ := whitelistHandler(t, wl, newClock(), "manual.example.com")
	for origin, want := range map[string]string{
		"https://manual.example.com":  "",
		"https://fetched.example.com": "",
		"https://other.example.com":   "domain_not_allowed",
	} {
		if r := originOutcome(t, h, origin); r != want {
			t.Errorf("%s: reason %q, want %q", origin, r, want)
		}
	}
}

func TestWhitelistURLInvalidAnswers(t *testing.T) {
	for _, body := range []string{`not json`, `{"list":["shop.example.com"]}`, `[1,2]`, `null`} {
		wl := newWhitelistAPI(t, body)
		h, _ := whitelistHandler(t, wl, newClock())
		if r := originOutcome(t, h, "https://shop.example.com"); r != "domain_not_allowed" {
			t.Errorf("answer %s: reason %q, want domain_not_allowed", body, r)
		}
	}
}

// TestWhitelistURLVisitorMayLeave: a visitor who leaves stops waiting for the first
// fetch at once; the others get the list.
func TestWhitelistURLVisitorMayLeave(t *testing.T) {
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	wl.hangRequests()
	h, _ := whitelistHandler(t, wl, newClock())
	ctx, leave := context.WithCancel(context.Background())
	leaving := outcomeAsync(t, h, widgetRequest("shop", "", "https://shop.example.com").WithContext(ctx))
	within(t, "the first fetch", wl.hung)
	staying := outcomeAsync(t, h, widgetRequest("shop", "", "https://shop.example.com"))
	leave()
	if o := within(t, "the visitor who left", leaving); o != "fallback/domain_not_allowed" {
		t.Errorf("visitor who left: %s", o)
	}
	wl.release()
	if o := within(t, "the visitor who stayed", staying); o != "fallback/missing_token" {
		t.Errorf("visitor who stayed: %s", o)
	}
	if n := wl.calls.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

// TestWhitelistURLSurvivesReload: the fetched list is in the cache that a reload
// keeps, so the next config does not fetch it again.
func TestWhitelistURLSurvivesReload(t *testing.T) {
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	size := defaultCacheSize
	for range 2 {
		h, _ := whitelistHandlerSized(t, wl, newClock(), size)
		if r := originOutcome(t, h, "https://shop.example.com"); r != "" {
			t.Fatalf("reason %q", r)
		}
	}
	if n := wl.calls.Load(); n != 1 {
		t.Errorf("fetches across a reload = %d, want 1", n)
	}
}

// TestWhitelistURLEntryBound: an answer with more than maxWhitelistEntries entries is
// refused like any bad answer.
func TestWhitelistURLEntryBound(t *testing.T) {
	for _, tc := range []struct {
		entries int
		want    string
	}{
		{maxWhitelistEntries, ""},
		{maxWhitelistEntries + 1, "domain_not_allowed"},
	} {
		wl := newWhitelistAPI(t, string(whitelistBody(tc.entries, "bound")))
		h, _ := whitelistHandler(t, wl, newClock())
		if r := originOutcome(t, h, "https://shop-0.bound.example.com"); r != tc.want {
			t.Errorf("%d entries: reason %q, want %q", tc.entries, r, tc.want)
		}
	}
}

// TestWhitelistURLLargerThanCache: a list that cannot fit in cache_size serves the
// requests that waited for it, and is not fetched again by every request.
func TestWhitelistURLLargerThanCache(t *testing.T) {
	body := whitelistBody(maxWhitelistEntries, "large")
	size := int64(1 << 20)
	if cost := whitelistCost(mustParseWhitelist(t, body)); cost <= size {
		t.Fatalf("the list costs %d, not more than the cache's %d", cost, size)
	}
	wl := newWhitelistAPI(t, string(body))
	clk := newClock()
	h, _ := whitelistHandlerSized(t, wl, clk, size)
	const origin = "https://shop-0.large.example.com"
	if r := originOutcome(t, h, origin); r != "" {
		t.Errorf("the request that waited for the list: reason %q", r)
	}
	for range 3 {
		originOutcome(t, h, origin)
	}
	if n := wl.calls.Load(); n != 1 {
		t.Errorf("fetches within the retry delay = %d, want 1", n)
	}
	clk.advance(holdBackAfterFailure)
	if r := originOutcome(t, h, origin); r != "" {
		t.Errorf("after the retry delay: reason %q", r)
	}
	if n := wl.calls.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2", n)
	}
}

func mustParseWhitelist(t testing.TB, body []byte) []string {
	t.Helper()
	entries, err := parseWhitelistAnswer(body)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// whitelistBody is a whitelist answer of n entries of every kind, all under tag.
// Entry i%5 == 0 is shop-<i>.<tag>.example.com.
func whitelistBody(n int, tag string) []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		switch i % 5 {
		case 0, 1:
			fmt.Fprintf(&b, `"shop-%d.%s.example.com"`, i, tag)
		case 2:
			fmt.Fprintf(&b, `"*.site-%d.%s.example.org"`, i, tag)
		case 3:
			fmt.Fprintf(&b, `"https://app-%d.%s.example.net:8443"`, i, tag)
		default:
			fmt.Fprintf(&b, `"bücher-%d.%s.example.de"`, i, tag)
		}
	}
	b.WriteByte(']')
	return []byte(b.String())
}

// TestWhitelistCostMatchesHeap compares whitelistCost with the heap that cached lists
// of several sizes really hold: never less, and not much more.
func TestWhitelistCostMatchesHeap(t *testing.T) {
	for _, n := range []int{1, 10, 100, 1000, 5000, maxWhitelistEntries} {
		lists := max(3, 20_000/n) // megabytes in all, so that other goroutines' allocations are noise
		c, err := newCaches(fmt.Sprintf("whitelist-cost-%d", n), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		bodies := make([][]byte, lists)
		for i := range bodies {
			bodies[i] = whitelistBody(n, fmt.Sprintf("t%d", i))
		}
		now := time.Now()
		before := liveHeap()
		var cost int64
		for i, body := range bodies {
			entries := mustParseWhitelist(t, body)
			list, _ := compileWhitelist(entries)
			cost += whitelistCost(entries)
			c.store(fmt.Sprintf("whitelist-%d", i), list, whitelistCost(entries), now, now)
		}
		held := liveHeap() - before
		runtime.KeepAlive(bodies)
		c.Destruct()
		t.Logf("%5d entries: %8d bytes held, cost %8d (%.2f×)", n, held/int64(lists), cost/int64(lists), float64(cost)/float64(held))
		// Maps grow by doubling, so the heap per entry varies by a half with the count.
		if cost < held || cost > held*2 {
			t.Errorf("%d entries: cost %d for %d bytes held; want between 1× and 2×", n, cost, held)
		}
	}
}

// TestRemoteWhitelistsStayWithinCacheSize: many remote bots with lists of the largest
// size share a small cache: the heap grows by at most cache_size and a margin, and a
// bot whose list was evicted still works, its list fetched again.
func TestRemoteWhitelistsStayWithinCacheSize(t *testing.T) {
	var mu sync.Mutex
	fetches := map[string]int{}
	lists := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tag := strings.TrimPrefix(r.URL.Path, "/lists/")
		mu.Lock()
		fetches[tag]++
		mu.Unlock()
		w.Write(whitelistBody(maxWhitelistEntries, tag))
	}))
	t.Cleanup(lists.Close)
	fetchesOf := func(bot string) int {
		mu.Lock()
		defer mu.Unlock()
		return fetches[bot]
	}

	bots := newBotsAPI(t)
	const count = 40
	for i := range count {
		id := fmt.Sprintf("bot-%d", i)
		bots.set(id, fmt.Sprintf(`{"auth_url":"https://api.example.com/ca","whitelist_url":{"url":%q}}`, lists.URL+"/lists/"+id))
	}
	size := defaultCacheSize
	h := provision(t, &Handler{CacheSize: size, now: newClock().Now, BotsURL: botsSource(bots)})
	origin := func(id string) string { return "https://shop-0." + id + ".example.com" }

	before := liveHeap()
	for i := range count {
		id := fmt.Sprintf("bot-%d", i)
		if o := botOutcome(t, h, id, "", origin(id)); o != "fallback/missing_token" {
			t.Fatalf("%s: %s", id, o)
		}
	}
	grown := liveHeap() - before
	accounted := h.caches.used()
	// The margin is for what is not cached: connections, metric series, the bots' ids.
	const margin = 2 << 20
	t.Logf("%d bots with %d-entry whitelists (%.1f MB each) in a %.1f MB cache: the heap grew by %.1f MB; the cache accounts %.1f MB",
		count, maxWhitelistEntries, float64(whitelistCost(mustParseWhitelist(t, whitelistBody(maxWhitelistEntries, "bot-0"))))/(1<<20),
		float64(size)/(1<<20), float64(grown)/(1<<20), float64(accounted)/(1<<20))
	if grown > size+margin {
		t.Errorf("the heap grew by %d bytes, over cache_size %d + %d", grown, size, margin)
	}

	for i := range count {
		id := fmt.Sprintf("bot-%d", i)
		b, _ := h.remoteBots.lookup(context.Background(), id)
		if b == nil {
			continue // its settings were evicted too
		}
		if _, cached := h.caches.entry(b.remoteList.cacheKey); cached {
			continue
		}
		fetched := fetchesOf(id)
		if o := botOutcome(t, h, id, "", origin(id)); o != "fallback/missing_token" {
			t.Errorf("%s, whose list was evicted: %s", id, o)
		}
		if n := fetchesOf(id); n != fetched+1 {
			t.Errorf("%s: %d fetches of its list, want %d", id, n, fetched+1)
		}
		return
	}
	t.Error("no bot's list was evicted")
}
