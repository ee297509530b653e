package customauth

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// botsAPI is a real HTTP server that plays the chat backend's bot settings API.
type botsAPI struct {
	*httptest.Server
	calls atomic.Int64

	mu       sync.Mutex
	settings map[string]string // by bot id; absent: 404
	down     bool
	paths    []string
	headers  http.Header
}

func newBotsAPI(t testing.TB) *botsAPI {
	b := &botsAPI{settings: map[string]string{}}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.calls.Add(1)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.paths = append(b.paths, r.URL.EscapedPath())
		b.headers = r.Header.Clone()
		if b.down {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		id, ok := strings.CutPrefix(r.URL.Path, "/bots/")
		settings, known := b.settings[id]
		if !ok || !known {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		io.WriteString(w, settings)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *botsAPI) set(id, settings string) {
	b.mu.Lock()
	b.settings[id] = settings
	b.mu.Unlock()
}

func (b *botsAPI) setDown(down bool) {
	b.mu.Lock()
	b.down = down
	b.mu.Unlock()
}

func remoteBotsHandler(t *testing.T, bots *botsAPI, clk *clock, size int64) *Handler {
	return provision(t, &Handler{
		CacheSize: size,
		now:       clk.Now,
		BotsURL: &BotsSource{
			URL:     bots.URL + "/bots/",
			Headers: map[string]string{"X-Api-Key": "backend-key"},
			TTL:     caddy.Duration(time.Minute),
			// The test APIs listen on 127.0.0.1, where tenant URLs may not go otherwise.
			AllowPrivate: true,
		},
		Bots: map[string]*Bot{"listed": {Off: true}},
	})
}

func botOutcome(t *testing.T, h *Handler, bot, token string) string {
	t.Helper()
	got := serve(t, h, widgetRequest(bot, token, "https://shop.example.com"))
	return got.placeholder("http.custom_auth.status") + "/" + got.placeholder("http.custom_auth.reason")
}

func TestRemoteBot(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q,"whitelist":["shop.example.com"]}`, api.URL))
	clk := newClock()
	h := remoteBotsHandler(t, bots, clk, uniqueCacheSize())

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

	// Settings changed at the backend take effect after ttl.
	bots.set("remote", `{"off":true}`)
	clk.advance(59 * time.Second)
	if o := botOutcome(t, h, "remote", "alice-token"); o != "verified/" {
		t.Errorf("before ttl: %s", o)
	}
	clk.advance(time.Second)
	if o := botOutcome(t, h, "remote", "alice-token"); o != "fallback/disabled" {
		t.Errorf("after ttl: %s", o)
	}
}

func TestRemoteBotSettingsChangeNeverServesOldIdentity(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL+"/v1"))
	clk := newClock()
	h := remoteBotsHandler(t, bots, clk, uniqueCacheSize())
	botOutcome(t, h, "remote", "alice-token")
	botOutcome(t, h, "remote", "alice-token")
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("identity API calls = %d, want 1", n)
	}
	bots.set("remote", fmt.Sprintf(`{"auth_url":%q}`, api.URL+"/v2"))
	clk.advance(time.Minute)
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
	h := remoteBotsHandler(t, bots, clk, uniqueCacheSize())
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
	h := remoteBotsHandler(t, bots, newClock(), uniqueCacheSize())
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
	h := remoteBotsHandler(t, bots, newClock(), uniqueCacheSize())
	for _, id := range []string{"bad-url", "no-url", "bad-identify", "bad-forward", "not-json", "too-large", "env-leak"} {
		if o := botOutcome(t, h, id, "alice-token"); o != "fallback/error" {
			t.Errorf("%s: %s, want fallback/error", id, o)
		}
	}
}

func TestRemoteBotHostileIDs(t *testing.T) {
	bots := newBotsAPI(t)
	h := remoteBotsHandler(t, bots, newClock(), uniqueCacheSize())
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
	used := size - h.caches.items.RemainingCost()
	if used > size || used <= 0 {
		t.Errorf("cache holds %d of %d bytes", used, size)
	}
	t.Logf("10,000 bots: cache holds %d bytes of %d", used, size)
}
