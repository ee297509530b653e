package customauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestBreakerSkipsAnAPIThatIsDown(t *testing.T) {
	api := newIdentityAPI(t)
	var healthy atomic.Bool
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		if healthy.Load() {
			return false // answer normally
		}
		select { // hang past the timeout
		case <-api.release:
		case <-time.After(5 * time.Second):
		}
		return true
	})
	h := provision(t, &Handler{CacheSize: uniqueCacheSize(), Bots: map[string]*Bot{"shop": {
		AuthURL:        api.URL + "/ca",
		Timeout:        caddy.Duration(50 * time.Millisecond),
		CacheTTL:       dur(0),
		CircuitBreaker: &BreakerSettings{OpenFor: caddy.Duration(200 * time.Millisecond)},
	}}})

	for i := range 20 {
		if o := verify(t, h, "alice-token"); o != "fallback/error" {
			t.Fatalf("request %d: %s", i, o)
		}
	}
	if n := api.calls.Load(); n != defaultBreakerFailures {
		t.Fatalf("API called %d times for 20 requests, want %d before the breaker opened", n, defaultBreakerFailures)
	}

	// The API recovers; once open_for has passed, a probe closes the breaker.
	healthy.Store(true)
	eventually(t, "the breaker to close", func() bool { return verify(t, h, "alice-token") == "verified/" })
	calls := api.calls.Load()
	for range 3 {
		if o := verify(t, h, "alice-token"); o != "verified/" {
			t.Fatalf("after recovery: %s", o)
		}
	}
	if n := api.calls.Load() - calls; n != 3 {
		t.Errorf("closed breaker let %d of 3 calls through", n)
	}
}

func TestBreakerIgnoresRejectionsAndMalformedAnswers(t *testing.T) {
	api := newIdentityAPI(t)
	h := provision(t, &Handler{CacheSize: uniqueCacheSize(), Bots: map[string]*Bot{"shop": {
		AuthURL: api.URL + "/other", CacheTTL: dur(0), NegativeTTL: dur(0),
		CircuitBreaker: &BreakerSettings{Failures: 2},
	}}})
	for range 5 {
		verify(t, h, "wrong-token")
		verify(t, h, "garbage-token")
	}
	if o := verify(t, h, "alice-token"); o != "verified/" {
		t.Errorf("breaker opened on rejections or malformed answers: %s", o)
	}
	if n := api.calls.Load(); n != 11 {
		t.Errorf("API calls = %d, want 11", n)
	}
}

func TestBreakerSharedByBotsOfOneAPI(t *testing.T) {
	a, err := newBreaker("https://api.example.com/shared", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newBreaker("https://api.example.com/shared", nil)
	c, _ := newBreaker("https://api.example.com/shared", &BreakerSettings{Failures: 3})
	if a != b || a == c {
		t.Error("breakers are not shared by URL and settings")
	}
	if _, err := newBreaker("https://x.example", &BreakerSettings{Failures: -1}); err == nil {
		t.Error("negative failures accepted")
	}
}

// TestBreakerIgnoresVisitorsWhoLeave: a visitor who closes the page stops waiting at
// once, while the API call goes on for whoever else waits for it; the visitor leaving
// never counts as the API being down.
func TestBreakerIgnoresVisitorsWhoLeave(t *testing.T) {
	api := newIdentityAPI(t)
	arrived := make(chan struct{}, 10)
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		if !strings.HasPrefix(body["access_token"], "hang-token") {
			return false
		}
		arrived <- struct{}{}
		<-api.release
		io.WriteString(w, `{"data":{"id":"9"}}`)
		return true
	})
	h := provision(t, &Handler{CacheSize: uniqueCacheSize(), Bots: map[string]*Bot{"shop": {
		AuthURL: api.URL + "/leave", CacheTTL: dur(0), NegativeTTL: dur(0),
		Timeout: caddy.Duration(time.Minute), CircuitBreaker: &BreakerSettings{Failures: 2},
	}}})
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		r := widgetRequest("shop", fmt.Sprintf("hang-token-%d", i), "").WithContext(ctx)
		done := make(chan string)
		go func() {
			done <- serve(t, h, r).placeholder("http.custom_auth.reason")
		}()
		select {
		case <-arrived:
			cancel()
		case reason := <-done:
			t.Fatalf("the call never reached the API (breaker open?): reason %q", reason)
		}
		// The API still hangs (for up to a minute): the visitor's answer comes without it.
		select {
		case reason := <-done:
			if reason != "error" {
				t.Fatalf("reason %q", reason)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a visitor who left kept waiting for the API")
		}
	}
	api.unblock()
	if o := verify(t, h, "alice-token"); o != "verified/" {
		t.Errorf("visitors who left opened the breaker: %s", o)
	}
}
