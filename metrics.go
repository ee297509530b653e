package customauth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the module's Prometheus collectors. They are created once per process
// and registered with each config's registry, so the counts go on across reloads.
// Labels name bots and outcomes, never a visitor.
type metrics struct {
	requests         *prometheus.CounterVec
	apiDuration      *prometheus.HistogramVec
	cacheRequests    *prometheus.CounterVec
	whitelistRefresh *prometheus.CounterVec

	// The identity cache's counters, looked up once: they count every request.
	identityHits, identityMisses prometheus.Counter
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
	m.requests.WithLabelValues(out.botLabel(), out.status.String(), string(out.reason)).Inc()
}

func (m *metrics) observeAPI(bot string, res lookupResult) {
	m.apiDuration.WithLabelValues(bot, res.result.String()).Observe(res.apiTime.Seconds())
}

func (m *metrics) observeCache(cache string, hit bool) {
	switch {
	case cache == "identity" && hit:
		m.identityHits.Inc()
	case cache == "identity":
		m.identityMisses.Inc()
	case hit:
		m.cacheRequests.WithLabelValues(cache, "hit").Inc()
	default:
		m.cacheRequests.WithLabelValues(cache, "miss").Inc()
	}
}

func (m *metrics) observeWhitelistRefreshError(bot string) {
	m.whitelistRefresh.WithLabelValues(bot).Inc()
}

// botLabel is the bot for the metric label: the id of the settings that applied ("*"
// for the default bot). A bot id that names no bot comes from the visitor and could be
// anything, so it is never a label value.
func (o *outcome) botLabel() string {
	if o.bot == nil {
		return ""
	}
	return o.bot.id
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
