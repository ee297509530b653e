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
	"go.uber.org/zap"
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
	h := provision(t, &Handler{Bots: map[string]*Bot{"shop": {
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
	h := provision(t, &Handler{Bots: map[string]*Bot{"shop": {
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

// TestListedBreakersOutliveAReload: a listed bot's breaker is kept in breakerPool by
// bot, URL and tuning while a config uses it, so a reload does not forget that an API
// is down; it goes when the last config that used it is cleaned up.
func TestListedBreakersOutliveAReload(t *testing.T) {
	const url = "https://api.example.com/listed-breakers"
	tuning, err := breakerTuningOf(nil)
	if err != nil {
		t.Fatal(err)
	}
	oldConfig, newConfig := new(listedBreakers), new(listedBreakers)
	shop := oldConfig.load("shop", url, tuning, processMetrics.breakerOpenGauge("shop"))
	if other := oldConfig.load("other", url, tuning, processMetrics.breakerOpenGauge("other")); other == shop {
		t.Error("two bots naming the same auth_url share a breaker")
	}
	if again := newConfig.load("shop", url, tuning, processMetrics.breakerOpenGauge("shop")); again != shop {
		t.Error("a reload of the same bot got a new breaker")
	}
	if changed := newConfig.load("shop", url, breakerTuning{failures: 3, openFor: tuning.openFor}, processMetrics.breakerOpenGauge("shop")); changed == shop {
		t.Error("a bot whose breaker settings changed kept the old breaker")
	}
	if err := oldConfig.release(); err != nil {
		t.Fatal(err)
	}
	if again := newConfig.load("shop", url, tuning, processMetrics.breakerOpenGauge("shop")); again != shop {
		t.Error("the breaker went while a config still used it")
	}
	if err := newConfig.release(); err != nil {
		t.Fatal(err)
	}
	if _, used := breakerPool.References(`{"BotID":"shop","URL":"` + url + `","Failures":5,"OpenFor":10000000000}`); used {
		t.Error("the breaker stayed after every config that used it was cleaned up")
	}
	if fresh := new(listedBreakers).load("shop", url, tuning, processMetrics.breakerOpenGauge("shop")); fresh == shop {
		t.Error("a breaker no config used came back")
	}
	if _, err := breakerTuningOf(&BreakerSettings{Failures: -1}); err == nil {
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
	h := provision(t, &Handler{Bots: map[string]*Bot{"shop": {
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

// TestBreakerBelongsToOneBot: bots that name the same auth_url, one of which fails
// (a remote bot with a 1ns timeout, a listed bot with a hanging call), do not share a
// breaker: the others are still verified once the failing bot's breaker is open.
func TestBreakerBelongsToOneBot(t *testing.T) {
	api := newIdentityAPI(t)
	bots := newBotsAPI(t)
	bots.set("attacker", fmt.Sprintf(`{"auth_url":%q,"timeout":"1ns","cache_ttl":0}`, api.URL+"/ca"))
	h := provision(t, &Handler{
		CacheSize: defaultCacheSize,
		BotsURL:   &BotsSource{URL: bots.URL + "/bots", AllowPrivate: true},
		Bots: map[string]*Bot{
			"victim": {AuthURL: api.URL + "/ca", CacheTTL: dur(0)},
			"flaky":  {AuthURL: api.URL + "/ca", CacheTTL: dur(0), Timeout: caddy.Duration(50 * time.Millisecond)},
		},
	})
	for i := range 2 * defaultBreakerFailures {
		if o := botOutcome(t, h, "attacker", "alice-token"); o != "fallback/error" {
			t.Fatalf("attacker request %d: %s", i, o)
		}
		if o := botOutcome(t, h, "flaky", "hang-token"); o != "fallback/error" {
			t.Fatalf("flaky request %d: %s", i, o)
		}
	}
	calls := api.calls.Load()
	if o := botOutcome(t, h, "flaky", "hang-token"); o != "fallback/error" || api.calls.Load() != calls {
		t.Fatalf("the failing bot's breaker did not open: %s", o)
	}
	if o := botOutcome(t, h, "victim", "alice-token"); o != "verified/" {
		t.Errorf("a bot sharing the auth_url was skipped: %s", o)
	}
}

// TestBreakerOpensOnAHangingAPI: calls that time out are the API's fault, also when
// no visitor waits for them to end (cache_ttl 0, calls shared by concurrent visitors).
func TestBreakerOpensOnAHangingAPI(t *testing.T) {
	api := newIdentityAPI(t)
	h := provision(t, &Handler{Bots: map[string]*Bot{"shop": {
		AuthURL: api.URL + "/hanging", CacheTTL: dur(0), NegativeTTL: dur(0),
		Timeout:        caddy.Duration(50 * time.Millisecond),
		CircuitBreaker: &BreakerSettings{Failures: 2, OpenFor: caddy.Duration(time.Minute)},
	}}})
	for i := range 2 {
		if o := verify(t, h, "hang-token"); o != "fallback/error" {
			t.Fatalf("request %d: %s", i, o)
		}
	}
	start := time.Now()
	if o := verify(t, h, "hang-token"); o != "fallback/error" {
		t.Fatalf("after two timeouts: %s", o)
	}
	if n := api.calls.Load(); n != 2 {
		t.Errorf("API calls = %d, want 2: the breaker did not open", n)
	}
	if took := time.Since(start); took >= 50*time.Millisecond {
		t.Errorf("an open breaker took %v to answer", took)
	}
}

// TestBreakerIgnoresCallsCutByAnUnload: a listed bot's breaker outlives a reload, and
// a call that the old config's unloading cut short is no news about the API: it
// counts neither as a failure nor as a success.
func TestBreakerIgnoresCallsCutByAnUnload(t *testing.T) {
	api := newIdentityAPI(t)
	arrived := make(chan struct{}, 1)
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		if body["access_token"] == "hang-token" {
			arrived <- struct{}{}
		}
		return false
	})
	config := func() *Handler {
		return &Handler{logger: zap.NewNop(), Bots: map[string]*Bot{"shop": {
			AuthURL: api.URL + "/unload", CacheTTL: dur(0), NegativeTTL: dur(0),
			Timeout:        caddy.Duration(time.Minute),
			CircuitBreaker: &BreakerSettings{Failures: 2, OpenFor: caddy.Duration(time.Minute)},
		}}}
	}
	oldCtx, unload := caddy.NewContext(caddy.Context{Context: context.Background()})
	old := config()
	if err := old.Provision(oldCtx); err != nil {
		t.Fatal(err)
	}
	defer unload()
	defer old.Cleanup()

	if o := verify(t, old, "boom-token"); o != "fallback/error" { // failure 1
		t.Fatal(o)
	}
	cut := make(chan string, 1)
	go func() { cut <- verify(t, old, "hang-token") }()
	<-arrived
	current := provision(t, config()) // the reload
	unload()                          // Caddy stops the old config
	select {
	case o := <-cut:
		if o != "fallback/error" {
			t.Errorf("call cut by the unload: %s", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an unloaded config's call went on")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}

	calls := api.calls.Load()
	if o := verify(t, current, "boom-token"); o != "fallback/error" || api.calls.Load() != calls+1 {
		t.Fatalf("the cut call counted as a failure: the breaker opened before failure 2 (%s)", o)
	}
	if o := verify(t, current, "boom-token"); o != "fallback/error" || api.calls.Load() != calls+1 {
		t.Errorf("failure 2 did not open the breaker: the reload forgot failure 1, or the cut call counted as a success (%s, %d calls)", o, api.calls.Load()-calls)
	}
}

// TestBreakerIgnoresACallerWhoLeft: a call whose caller stops waiting tells nothing
// about the API: between two failures it neither opens the breaker nor resets the
// count of consecutive failures.
func TestBreakerIgnoresACallerWhoLeft(t *testing.T) {
	api := newIdentityAPI(t)
	arrived := make(chan struct{}, 1)
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		if body["access_token"] == "hang-token" {
			arrived <- struct{}{}
		}
		return false
	})
	h := provision(t, &Handler{Bots: map[string]*Bot{"shop": {
		AuthURL: api.URL + "/left", Timeout: caddy.Duration(time.Minute),
		CircuitBreaker: &BreakerSettings{Failures: 2, OpenFor: caddy.Duration(time.Minute)},
	}}})
	// The handler's calls never see their visitor leave (the cache shares them), so
	// this asks the client directly, as a caller that can leave would.
	client := &identityClient{config: context.Background(), metrics: h.env.metrics}
	call := func(ctx context.Context, token string) verdict {
		return client.identify(ctx, h.bots["shop"], identityRequest{token: token})
	}

	if res := call(context.Background(), "boom-token"); res.health != apiDown { // failure 1
		t.Fatalf("5xx: %v", res.err)
	}
	ctx, leave := context.WithCancel(context.Background())
	go func() {
		<-arrived
		leave()
	}()
	if res := call(ctx, "hang-token"); res.kind != verdictError || res.health != apiUnknown {
		t.Fatalf("caller left: result %v, health %v (%v)", res.kind, res.health, res.err)
	}
	calls := api.calls.Load()
	if res := call(context.Background(), "boom-token"); api.calls.Load() != calls+1 { // failure 2
		t.Fatalf("the caller who left counted as a failure: the breaker opened early (%v)", res.err)
	}
	if res := call(context.Background(), "alice-token"); res.err != errBreakerOpen {
		t.Errorf("the caller who left counted as a success: two failures did not open the breaker (%v, %v)", res.kind, res.err)
	}
}
