package customauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// whitelistAPI is a real HTTP server that answers a whitelist.
type whitelistAPI struct {
	*httptest.Server
	calls atomic.Int64

	mu      sync.Mutex
	status  int
	body    string
	headers http.Header
}

func newWhitelistAPI(t testing.TB, body string) *whitelistAPI {
	w := &whitelistAPI{status: http.StatusOK, body: body}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.calls.Add(1)
		w.mu.Lock()
		status, body := w.status, w.body
		w.headers = r.Header.Clone()
		w.mu.Unlock()
		rw.WriteHeader(status)
		io.WriteString(rw, body)
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *whitelistAPI) answer(status int, body string) {
	w.mu.Lock()
	w.status, w.body = status, body
	w.mu.Unlock()
}

// eventually waits, within a bound, for a background refresh to show its effect.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func whitelistHandler(t *testing.T, wl *whitelistAPI, clk *clock, manual ...string) (*Handler, *identityAPI) {
	api := newIdentityAPI(t)
	h := provision(t, &Handler{
		CacheSize: uniqueCacheSize(),
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
	refreshing := &h.bots["shop"].remoteList.refreshing
	eventually(t, "the failed refresh", func() bool { return wl.calls.Load() == 2 && !refreshing.Load() })
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
	clk.advance(whitelistRetryDelay)
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
