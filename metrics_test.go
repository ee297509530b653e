package customauth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func counter(c *prometheus.CounterVec, labels ...string) float64 {
	return testutil.ToFloat64(c.WithLabelValues(labels...))
}

func TestMetricsCountRequests(t *testing.T) {
	api := newIdentityAPI(t)
	bot := fmt.Sprintf("metrics-%s", t.Name())
	h := provision(t, &Handler{Bots: map[string]*Bot{
		bot: {AuthURL: api.URL, Whitelist: []string{"shop.example.com"}},
	}})
	m := processMetrics
	verified := counter(m.requests, bot, "verified", "")
	rejected := counter(m.requests, bot, "fallback", "rejected")
	domain := counter(m.requests, bot, "fallback", "domain_not_allowed")
	unknown := counter(m.requests, "", "fallback", "unknown_bot")
	hits := counter(m.cacheRequests, "identity", "hit")
	misses := counter(m.cacheRequests, "identity", "miss")
	apiCount := func() uint64 {
		return histogramCount(t, m.apiDuration, bot, "verified") + histogramCount(t, m.apiDuration, bot, "rejected")
	}
	apiBefore := apiCount()

	for _, r := range []struct{ bot, token, origin string }{
		{bot, "alice-token", "https://shop.example.com"},
		{bot, "alice-token", "https://shop.example.com"},
		{bot, "wrong-token", "https://shop.example.com"},
		{bot, "alice-token", "https://evil.example.com"},
		{"visitor-chosen-id-" + t.Name(), "alice-token", ""},
	} {
		serve(t, h, widgetRequest(r.bot, r.token, r.origin))
	}

	for name, got := range map[string]float64{
		"verified":           counter(m.requests, bot, "verified", "") - verified,
		"rejected":           counter(m.requests, bot, "fallback", "rejected") - rejected,
		"domain_not_allowed": counter(m.requests, bot, "fallback", "domain_not_allowed") - domain,
		"unknown_bot":        counter(m.requests, "", "fallback", "unknown_bot") - unknown,
		"cache hits":         counter(m.cacheRequests, "identity", "hit") - hits,
		"cache misses":       counter(m.cacheRequests, "identity", "miss") - misses,
	} {
		want := map[string]float64{"verified": 2, "rejected": 1, "domain_not_allowed": 1, "unknown_bot": 1, "cache hits": 1, "cache misses": 2}[name]
		if got != want {
			t.Errorf("%s counted %v, want %v", name, got, want)
		}
	}
	if n := apiCount() - apiBefore; n != 2 {
		t.Errorf("api_duration_seconds observed %d calls, want 2", n)
	}
	// A bot id that names no bot is never a label value.
	ch := make(chan prometheus.Metric)
	go func() {
		m.requests.Collect(ch)
		close(ch)
	}()
	for metric := range ch {
		var pb dto.Metric
		if err := metric.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, label := range pb.GetLabel() {
			if strings.HasPrefix(label.GetValue(), "visitor-chosen-id") {
				t.Errorf("a visitor-chosen bot id became a label value: %v", pb.GetLabel())
			}
		}
	}
}

func histogramCount(t *testing.T, h *prometheus.HistogramVec, labels ...string) uint64 {
	t.Helper()
	var pb dto.Metric
	if err := h.WithLabelValues(labels...).(prometheus.Metric).Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount()
}

func TestMetricsSurviveReload(t *testing.T) {
	api := newIdentityAPI(t)
	bot := "reload-" + t.Name()
	config := func() (*Handler, *prometheus.Registry) {
		h := &Handler{Bots: map[string]*Bot{bot: {AuthURL: api.URL}}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Cleanup() })
		return h, ctx.GetMetricsRegistry()
	}
	before := counter(processMetrics.requests, bot, "verified", "")
	first, firstRegistry := config()
	serve(t, first, widgetRequest(bot, "alice-token", ""))
	second, secondRegistry := config()
	serve(t, second, widgetRequest(bot, "alice-token", ""))

	for i, registry := range []*prometheus.Registry{firstRegistry, secondRegistry} {
		count, err := testutil.GatherAndCount(registry, "caddy_custom_auth_requests_total", "caddy_custom_auth_api_duration_seconds",
			"caddy_custom_auth_cache_requests_total", "caddy_custom_auth_breaker_open", "caddy_custom_auth_identity_calls_in_flight")
		if err != nil || count == 0 {
			t.Errorf("registry %d: %d series, %v", i, count, err)
		}
	}
	if got := counter(processMetrics.requests, bot, "verified", "") - before; got != 2 {
		t.Errorf("verified across the reload = %v, want 2", got)
	}
}

func TestDecisionLogsNeverShowTheToken(t *testing.T) {
	api := newIdentityAPI(t)
	wl := newWhitelistAPI(t, `down`)
	wl.answer(500, "")
	h := provision(t, &Handler{Bots: map[string]*Bot{
		"shop":   {AuthURL: api.URL, CacheTTL: dur(0)},
		"listed": {AuthURL: api.URL, WhitelistURL: &WhitelistSource{URL: wl.URL}},
		"down":   {AuthURL: "http://127.0.0.1:1/"},
	}})
	core, logs := observer.New(zapcore.DebugLevel)
	h.env.logger = zap.New(core)

	const secret = "super-secret-token-123"
	for _, r := range [][2]string{{"shop", "alice-token"}, {"shop", secret}, {"shop", secret + "x"}, {"down", secret}, {"listed", secret}, {"shop", "boom-token"}} {
		serve(t, h, widgetRequest(r[0], r[1], "https://shop.example.com"))
	}
	decisions := logs.FilterMessage("custom authentication").All()
	if len(decisions) != 6 {
		t.Errorf("%d decision lines, want 6", len(decisions))
	}
	var sawVerified, sawError bool
	for _, entry := range decisions {
		fields := entry.ContextMap()
		if fields["status"] == "verified" && fields["bot"] == "shop" {
			sawVerified = true
		}
		if fields["reason"] == "error" && fields["error"] != nil {
			sawError = true
		}
	}
	if !sawVerified || !sawError {
		t.Errorf("decision lines lack bot/status/reason/error: %v", decisions)
	}
	warnings := logs.FilterLevelExact(zapcore.WarnLevel)
	for _, bot := range []string{"listed", "down", "shop"} {
		if n := warnings.FilterField(zap.String("bot", bot)).Len(); n != 1 {
			t.Errorf("%d warnings for bot %s, want 1", n, bot)
		}
	}
	// The same failure again within the interval is not repeated.
	serve(t, h, widgetRequest("down", "alice-token", ""))
	if n := logs.FilterLevelExact(zapcore.WarnLevel).FilterField(zap.String("bot", "down")).Len(); n != 1 {
		t.Errorf("%d warnings for bot down after a second failure, want 1", n)
	}
	for _, entry := range logs.All() {
		text := fmt.Sprintf("%s %v", entry.Message, entry.ContextMap())
		if strings.Contains(text, secret) {
			t.Fatalf("token logged: %s", text)
		}
		if entry.Level > zapcore.DebugLevel && strings.Contains(text, "Nguyễn") {
			t.Fatalf("contact details logged above debug: %s", text)
		}
	}
}

// TestBotLabelsBounded: 2,000 random bot ids, each with settings from a lenient
// bots_url, give at most maxBotLabels bot label values (plus otherBotsLabel, under
// which the rest count) in every metric that has a bot label; a bot listed in the
// config keeps its own.
func TestBotLabelsBounded(t *testing.T) {
	api := newIdentityAPI(t)
	failing := newWhitelistAPI(t, "")
	failing.answer(http.StatusInternalServerError, "")
	bots := newBotsAPI(t)
	const flood = 2000
	ids := make([]string, flood)
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x", rand.Uint64())
		// Half reach the identity API, half fail to fetch their whitelist.
		if i%2 == 0 {
			bots.set(ids[i], fmt.Sprintf(`{"auth_url":%q}`, api.URL))
		} else {
			bots.set(ids[i], fmt.Sprintf(`{"auth_url":%q,"whitelist_url":{"url":%q}}`, api.URL, failing.URL))
		}
	}
	m := newProcessMetrics()
	registry := prometheus.NewRegistry()
	registry.MustRegister(m.collectors()...)
	h := provision(t, &Handler{
		CacheSize: defaultCacheSize,
		metrics:   m,
		BotsURL:   botsSource(bots),
		Bots:      map[string]*Bot{"operator-bot": {Off: true}},
	})
	for _, id := range ids {
		serve(t, h, widgetRequest(id, "wrong-token", "https://shop.example.com"))
	}
	serve(t, h, widgetRequest("operator-bot", "wrong-token", ""))

	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	allBots := map[string]bool{}
	series := map[string]int{}
	for _, family := range families {
		values := map[string]bool{}
		for _, metric := range family.GetMetric() {
			series[family.GetName()]++
			for _, label := range metric.GetLabel() {
				if label.GetName() == "bot" {
					values[label.GetValue()] = true
					allBots[label.GetValue()] = true
				}
			}
		}
		if len(values) > maxBotLabels+2 {
			t.Errorf("%s: %d bot label values, want at most %d", family.GetName(), len(values), maxBotLabels+2)
		}
	}
	t.Logf("%d random bot ids: %d bot label values, series %v", flood, len(allBots), series)
	if len(allBots) != maxBotLabels+2 {
		t.Errorf("%d bot label values in all, want %d: %d bots, %s and the listed bot", len(allBots), maxBotLabels+2, maxBotLabels, otherBotsLabel)
	}
	if n := series["caddy_custom_auth_requests_total"]; n > 2*(maxBotLabels+2) {
		t.Errorf("requests_total has %d series, want at most 2 per bot label value", n)
	}
	others := counter(m.requests, otherBotsLabel, "fallback", "rejected") + counter(m.requests, otherBotsLabel, "fallback", "domain_not_allowed")
	if others != flood-maxBotLabels {
		t.Errorf("%s counted %v requests, want %d", otherBotsLabel, others, flood-maxBotLabels)
	}
	if n := counter(m.requests, "operator-bot", "fallback", "disabled"); n != 1 {
		t.Errorf("the listed bot counted %v requests under its own label, want 1", n)
	}
}

// gathered is the value of a gauge's series for a bot, as a registry serves it.
func gathered(t *testing.T, registry *prometheus.Registry, name, bot string) float64 {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, family := range families {
		if family.GetName() != name {
			continue
		}
		for _, metric := range family.GetMetric() {
			for _, label := range metric.GetLabel() {
				if label.GetName() == "bot" && label.GetValue() == bot {
					return metric.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s has no series for bot %q", name, bot)
	return 0
}

// handlerWithRegistry provisions a handler with metrics of its own, served by a
// registry of its own.
func handlerWithRegistry(t *testing.T, h *Handler) (*Handler, *prometheus.Registry) {
	t.Helper()
	h.metrics = newProcessMetrics()
	registry := prometheus.NewRegistry()
	registry.MustRegister(h.metrics.collectors()...)
	return provision(t, h), registry
}

// TestMetricsBreakerOpen: a bot's breaker_open gauge is 1 once its identity API
// failed `failures` times in a row, and 0 again once a probe succeeds.
func TestMetricsBreakerOpen(t *testing.T) {
	api := newIdentityAPI(t)
	h, registry := handlerWithRegistry(t, &Handler{Bots: map[string]*Bot{"shop": {
		AuthURL: api.URL, CacheTTL: dur(0), NegativeTTL: dur(0),
		// Open for a nanosecond: the call after the one that opens it is the probe.
		CircuitBreaker: &BreakerSettings{Failures: 2, OpenFor: caddy.Duration(time.Nanosecond)},
	}}})
	breakerOpen := func() float64 { return gathered(t, registry, "caddy_custom_auth_breaker_open", "shop") }

	for i, step := range []struct {
		token string
		open  float64
	}{
		{"boom-token", 0},  // one 5xx: still closed
		{"boom-token", 1},  // two in a row: open
		{"alice-token", 0}, // half-open, the probe succeeds: closed
		{"boom-token", 0},
		{"boom-token", 1},
		{"boom-token", 1}, // half-open, the probe fails: open again
	} {
		identifyToken(h, "shop", step.token)
		if got := breakerOpen(); got != step.open {
			t.Fatalf("after call %d (%s): breaker_open = %v, want %v", i+1, step.token, got, step.open)
		}
	}
}

// TestMetricsBreakerThatGoesStopsCounting: a breaker that goes while open leaves
// the gauge: a listed bot's when the last config using it is cleaned up, a remote
// bot's when its settings leave the cache, at once, with no garbage collection.
func TestMetricsBreakerThatGoesStopsCounting(t *testing.T) {
	m := newProcessMetrics()
	registry := prometheus.NewRegistry()
	registry.MustRegister(m.collectors()...)
	trip := func(b *breaker) {
		done, ok := b.allow()
		if !ok {
			t.Fatal("a new breaker refused a call")
		}
		done(apiDown)
	}
	tuning := breakerTuning{failures: 1, openFor: time.Minute}

	config := new(listedBreakers)
	trip(config.load("listed", "https://api.example.com/ca", tuning, m.breakerOpenGauge("listed")))
	if got := gathered(t, registry, "caddy_custom_auth_breaker_open", "listed"); got != 1 {
		t.Fatalf("listed bot's breaker tripped: breaker_open = %v, want 1", got)
	}
	if err := config.release(); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, registry, "caddy_custom_auth_breaker_open", "listed"); got != 0 {
		t.Errorf("config cleaned up: breaker_open = %v, want 0", got)
	}

	remote := &remoteBot{bot: &botSettings{breaker: newBreaker("remote", tuning, m.breakerOpenGauge("remote"))}}
	trip(remote.bot.breaker)
	if got := gathered(t, registry, "caddy_custom_auth_breaker_open", "remote"); got != 1 {
		t.Fatalf("remote bot's breaker tripped: breaker_open = %v, want 1", got)
	}
	remote.evicted() // its settings left the cache
	if got := gathered(t, registry, "caddy_custom_auth_breaker_open", "remote"); got != 0 {
		t.Errorf("remote bot evicted: breaker_open = %v, want 0", got)
	}
	// A call still in flight that ends after the eviction does not count it again.
	remote.bot.breaker.gauge.set(true)
	if got := gathered(t, registry, "caddy_custom_auth_breaker_open", "remote"); got != 0 {
		t.Errorf("evicted bot's breaker tripped again: breaker_open = %v, want 0", got)
	}
}

// TestMetricsIdentityCallsInFlight: n calls waiting for an identity API that hangs
// show as n, and as 0 once it answers.
func TestMetricsIdentityCallsInFlight(t *testing.T) {
	const n = 5
	api := newIdentityAPI(t)
	arrived := make(chan struct{}, n)
	api.setAnswer(func(http.ResponseWriter, map[string]string) bool {
		arrived <- struct{}{}
		<-api.release
		return false // then the usual answer
	})
	h, registry := handlerWithRegistry(t, &Handler{Bots: map[string]*Bot{"shop": {AuthURL: api.URL, Timeout: caddy.Duration(time.Minute)}}})
	inFlight := func() float64 { return gathered(t, registry, "caddy_custom_auth_identity_calls_in_flight", "shop") }

	var calls sync.WaitGroup
	for i := range n {
		calls.Go(func() { identifyToken(h, "shop", fmt.Sprintf("token-%d", i)) }) // each its own call
	}
	for i := range n {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d calls reached the API", i, n)
		}
	}
	if got := inFlight(); got != n {
		t.Errorf("with %d calls hanging: identity_calls_in_flight = %v", n, got)
	}
	api.unblock()
	calls.Wait()
	if got := inFlight(); got != 0 {
		t.Errorf("once answered: identity_calls_in_flight = %v, want 0", got)
	}
}

// TestSharedCacheUpOnlyWithALink: shared_cache_up is in a scrape only while a shared
// cache is in use, so that its alert stays quiet on gateways without one; a link that
// closed is not brought back by a late report of its state.
func TestSharedCacheUpOnlyWithALink(t *testing.T) {
	m := newProcessMetrics()
	series := func() int { return testutil.CollectAndCount(m.sharedUp) }
	if n := series(); n != 0 {
		t.Fatalf("without a link: %d shared_cache_up series, want 0", n)
	}
	m.addLink("a")
	if n, up := series(), testutil.ToFloat64(m.sharedUp); n != 1 || up != 0 {
		t.Fatalf("a new link: %d series at %v, want 1 at 0", n, up)
	}
	m.observeLink("a", true)
	if up := testutil.ToFloat64(m.sharedUp); up != 1 {
		t.Fatalf("the link is up: %v, want 1", up)
	}
	m.forgetLink("a")
	m.observeLink("a", false) // a breaker that moved as the link closed
	if n := series(); n != 0 {
		t.Fatalf("after the link closed: %d series, want 0", n)
	}
}
