package customauth

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the module's Prometheus collectors. They are created once per process
// and registered with each config's registry, so the counts go on across reloads.
// Labels name bots and outcomes, never a visitor.
//
// The bot label is bounded, because with bots_url the bot id comes from the visitor
// and a chat backend may answer settings for any id: each distinct value is a series
// (several, one per status and reason) that lives as long as the process. Bots listed
// in the config always have their id as label value, since the operator wrote them.
// Other bots get theirs in the order they are first seen, up to maxBotLabels in the
// life of the process; bots beyond that are counted together under otherBotsLabel.
// requests_total then has at most (listed bots + maxBotLabels + 2) bot values, each
// with the few status and reason pairs that bot met. The same rule applies to
// api_duration_seconds and whitelist_refresh_errors_total.
type metrics struct {
	requests         *prometheus.CounterVec
	apiDuration      *prometheus.HistogramVec
	cacheRequests    *prometheus.CounterVec
	whitelistRefresh *prometheus.CounterVec

	// The caches' counters, looked up once: they count every request.
	identityHits, identityMisses   prometheus.Counter
	whitelistHits, whitelistMisses prometheus.Counter
	botsHits, botsMisses           prometheus.Counter

	bots botLabels
}

const (
	// maxBotLabels is how many bots not listed in the config may have their own bot
	// label value in the life of the process: enough for the bots a gateway actually
	// serves in most deployments, few enough that a flood of made-up ids cannot
	// grow the scrape without bound.
	maxBotLabels = 1000
	// otherBotsLabel is the bot label value of the bots beyond maxBotLabels.
	otherBotsLabel = "_other"
)

// botLabels decides the bot label value of a bot id. Looking up an id that already
// has its label, or any id once the cap is reached, takes no lock.
type botLabels struct {
	named   sync.Map // bot id -> struct{}: ids that are their own label value
	mu      sync.Mutex
	counted atomic.Int64 // ids named under the cap
}

// nameListed gives a bot listed in the config its own label value, outside the cap.
func (l *botLabels) nameListed(id string) {
	l.named.Store(id, struct{}{})
}

// label is the bot label value for a bot id: the id itself, or otherBotsLabel once
// maxBotLabels ids not listed in the config have been named.
func (l *botLabels) label(id string) string {
	if _, ok := l.named.Load(id); ok {
		return id
	}
	if l.counted.Load() >= maxBotLabels {
		return otherBotsLabel
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.named.Load(id); ok {
		return id
	}
	if l.counted.Load() >= maxBotLabels {
		return otherBotsLabel
	}
	l.named.Store(id, struct{}{})
	l.counted.Add(1)
	return id
}

var processMetrics = newProcessMetrics()

func newProcessMetrics() *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy",
			Subsystem: "custom_auth",
			Name:      "requests_total",
			Help:      "Requests seen by custom_auth, by bot, status (verified or fallback) and fallback reason.",
		}, []string{"bot", "status", "reason"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "caddy",
			Subsystem: "custom_auth",
			Name:      "api_duration_seconds",
			Help:      "Duration of identity API calls, by bot and result (verified, rejected or error).",
			Buckets:   prometheus.DefBuckets,
		}, []string{"bot", "result"}),
		cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy",
			Subsystem: "custom_auth",
			Name:      "cache_requests_total",
			Help:      "Cache lookups, by cache (identity, whitelist or bots) and result (hit or miss).",
		}, []string{"cache", "result"}),
		whitelistRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy",
			Subsystem: "custom_auth",
			Name:      "whitelist_refresh_errors_total",
			Help:      "Failed fetches of a bot's whitelist_url.",
		}, []string{"bot"}),
	}
	m.identityHits = m.cacheRequests.WithLabelValues("identity", "hit")
	m.identityMisses = m.cacheRequests.WithLabelValues("identity", "miss")
	m.whitelistHits = m.cacheRequests.WithLabelValues("whitelist", "hit")
	m.whitelistMisses = m.cacheRequests.WithLabelValues("whitelist", "miss")
	m.botsHits = m.cacheRequests.WithLabelValues("bots", "hit")
	m.botsMisses = m.cacheRequests.WithLabelValues("bots", "miss")
	return m
}

// newMetrics registers the collectors with a config's registry.
func newMetrics(registry *prometheus.Registry) (*metrics, error) {
	if registry == nil {
		return processMetrics, nil
	}
	for _, c := range []prometheus.Collector{
		processMetrics.requests,
		processMetrics.apiDuration,
		processMetrics.cacheRequests,
		processMetrics.whitelistRefresh,
	} {
		if err := registry.Register(c); err != nil {
			// A second custom_auth handler in the same config registers them again.
			if !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				return nil, err
			}
		}
	}
	return processMetrics, nil
}

func (m *metrics) observeRequest(out *outcome) {
	if out.status == statusVerified {
		out.bot.verifiedRequests.Inc() // the everyday path skips the label lookup
		return
	}
	m.requests.WithLabelValues(m.botLabel(out), out.status.String(), string(out.reason)).Inc()
}

// verifiedCounter is a bot's counter of verified requests, looked up once per bot.
func (m *metrics) verifiedCounter(bot string) prometheus.Counter {
	return m.requests.WithLabelValues(m.bots.label(bot), statusVerified.String(), "")
}

func (m *metrics) observeAPI(bot string, res lookupResult) {
	m.apiDuration.WithLabelValues(m.bots.label(bot), res.result.String()).Observe(res.apiTime.Seconds())
}

// observeCache counts a lookup in the identity, whitelist or bots cache, without a
// label lookup.
func (m *metrics) observeCache(cache string, hit bool) {
	var hits, misses prometheus.Counter
	switch cache {
	case "identity":
		hits, misses = m.identityHits, m.identityMisses
	case "whitelist":
		hits, misses = m.whitelistHits, m.whitelistMisses
	default:
		hits, misses = m.botsHits, m.botsMisses
	}
	if hit {
		hits.Inc()
	} else {
		misses.Inc()
	}
}

func (m *metrics) observeWhitelistRefreshError(bot string) {
	m.whitelistRefresh.WithLabelValues(m.bots.label(bot)).Inc()
}

// botLabel is the bot label value of a request's outcome: that of the settings that
// applied ("*" for the default bot). A bot id that names no bot comes from the visitor
// and could be anything, so it is never a label value.
func (m *metrics) botLabel(out *outcome) string {
	if out.bot == nil {
		return ""
	}
	return m.bots.label(out.bot.id)
}

func (r result) String() string {
	switch r {
	case resultVerified:
		return "verified"
	case resultRejected:
		return "rejected"
	}
	return "error"
}
