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
// with the few status and reason pairs that bot met. The same rule applies to every
// metric with a bot label.
type metrics struct {
	requests         *prometheus.CounterVec
	apiDuration      *prometheus.HistogramVec
	cacheRequests    *prometheus.CounterVec
	whitelistRefresh *prometheus.CounterVec
	breakerOpen      *prometheus.GaugeVec
	callsInFlight    *prometheus.GaugeVec
	sharedRequests   *prometheus.CounterVec
	sharedUp         *prometheus.GaugeVec // no labels: present only while a link is
	purges           *prometheus.CounterVec

	// The caches' counters, looked up once: they count every request.
	identityHits, identityMisses   prometheus.Counter
	whitelistHits, whitelistMisses prometheus.Counter
	botsHits, botsMisses           prometheus.Counter
	sharedHits                     prometheus.Counter
	sharedReads                    [sharedSkipped + 1]prometheus.Counter // by sharedRead

	bots  botLabels
	links linkStates
}

// linkStates are the links to shared caches and whether each is up: shared_cache_up
// is 1 while every one is.
type linkStates struct {
	mu sync.Mutex
	up map[string]bool // by fleetLink.id
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
		breakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "caddy",
			Subsystem: "custom_auth",
			Name:      "breaker_open",
			Help:      "Identity API circuit breakers that are open or half-open (calls skipped but for one probe), by bot: 1 or 0 for a bot; the bots counted under _other add up.",
		}, []string{"bot"}),
		callsInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "caddy",
			Subsystem: "custom_auth",
			Name:      "identity_calls_in_flight",
			Help:      "Identity API calls under way, by bot: those waiting for an API that hangs pile up here.",
		}, []string{"bot"}),
	}
	m.addFleetCollectors()
	m.identityHits = m.cacheRequests.WithLabelValues("identity", "hit")
	m.identityMisses = m.cacheRequests.WithLabelValues("identity", "miss")
	m.whitelistHits = m.cacheRequests.WithLabelValues("whitelist", "hit")
	m.whitelistMisses = m.cacheRequests.WithLabelValues("whitelist", "miss")
	m.botsHits = m.cacheRequests.WithLabelValues("bots", "hit")
	m.botsMisses = m.cacheRequests.WithLabelValues("bots", "miss")
	m.sharedHits = m.cacheRequests.WithLabelValues("shared", "hit")
	for read, name := range []string{sharedMiss: "miss", sharedHit: "hit", sharedError: "error", sharedSkipped: "skipped"} {
		m.sharedReads[read] = m.sharedRequests.WithLabelValues(name)
	}
	return m
}

// addFleetCollectors creates the collectors of shared_cache and purges.
func (m *metrics) addFleetCollectors() {
	m.sharedRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "custom_auth",
		Name:      "shared_cache_requests_total",
		Help:      "Reads of the shared cache, by result: hit, miss, error (failed or too slow) or skipped (not asked while its link or purge channel is down, or while it fails too often).",
	}, []string{"result"})
	m.sharedUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy",
		Subsystem: "custom_auth",
		Name:      "shared_cache_up",
		Help:      "1 while every shared cache answers and its purge channel works, else 0.",
	}, nil)
	m.purges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "custom_auth",
		Name:      "purges_total",
		Help:      "Purges through a shared cache, by result: ok, or partial when the fleet could not be told in time (answered 503; delivered once the shared cache is back).",
	}, []string{"result"})
}

// newMetrics registers the collectors with a config's registry.
func newMetrics(registry *prometheus.Registry) (*metrics, error) {
	if registry == nil {
		return processMetrics, nil
	}
	for _, c := range processMetrics.collectors() {
		if err := registry.Register(c); err != nil {
			// A second custom_auth handler in the same config registers them again.
			if !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				return nil, err
			}
		}
	}
	return processMetrics, nil
}

// collectors are the collectors a registry serves.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.apiDuration, m.cacheRequests, m.whitelistRefresh, m.breakerOpen, m.callsInFlight,
		m.sharedRequests, m.sharedUp, m.purges}
}

// observeFallback counts a request that was not verified. bot is the id of the
// settings that applied ("*" for the default bot), empty when none did: a bot id that
// names no bot comes from the visitor and could be anything, so it is never a label
// value.
func (m *metrics) observeFallback(bot, statusName, reasonName string) {
	label := ""
	if bot != "" {
		label = m.bots.label(bot)
	}
	m.requests.WithLabelValues(label, statusName, reasonName).Inc()
}

// verifiedCounter is a bot's counter of verified requests, looked up once per bot, so
// that the everyday path skips the label lookup.
func (m *metrics) verifiedCounter(bot string) prometheus.Counter {
	return m.requests.WithLabelValues(m.bots.label(bot), "verified", "")
}

func (m *metrics) observeAPI(bot string, res verdict) {
	m.apiDuration.WithLabelValues(m.bots.label(bot), res.kind.String()).Observe(res.apiTime.Seconds())
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
	case "shared":
		hits = m.sharedHits // a miss there is an identity miss
	default:
		hits, misses = m.botsHits, m.botsMisses
	}
	if hit {
		hits.Inc()
	} else {
		misses.Inc()
	}
}

// sharedRead is what a read of the shared cache found, as
// caddy_custom_auth_shared_cache_requests_total counts it.
type sharedRead uint8

const (
	sharedMiss    sharedRead = iota
	sharedHit                // a verdict that may be served
	sharedError              // the server failed or was too slow
	sharedSkipped            // not asked: the link or its purge channel is down, or its breaker open
)

// observeShared counts a read of the shared cache.
func (m *metrics) observeShared(read sharedRead) {
	m.sharedReads[read].Inc()
}

// observePurge counts a purge through a shared cache: told the fleet in time or not.
func (m *metrics) observePurge(ok bool) {
	result := "ok"
	if !ok {
		result = "partial"
	}
	m.purges.WithLabelValues(result).Inc()
}

// addLink counts a new link to a shared cache, down until it says otherwise.
func (m *metrics) addLink(link string) {
	m.links.mu.Lock()
	defer m.links.mu.Unlock()
	if m.links.up == nil {
		m.links.up = map[string]bool{}
	}
	m.links.up[link] = false
	m.showLinks()
}

// observeLink records whether a link to a shared cache is up, and sets shared_cache_up.
// A link that was forgotten stays forgotten: a call still under way when it closed
// says nothing of it.
func (m *metrics) observeLink(link string, up bool) {
	m.links.mu.Lock()
	defer m.links.mu.Unlock()
	if _, ok := m.links.up[link]; !ok {
		return
	}
	m.links.up[link] = up
	m.showLinks()
}

// forgetLink drops a link that was closed.
func (m *metrics) forgetLink(link string) {
	m.links.mu.Lock()
	defer m.links.mu.Unlock()
	delete(m.links.up, link)
	m.showLinks()
}

// showLinks sets shared_cache_up, which a process without links does not have (an
// alert on it would fire on every gateway without shared_cache); m.links.mu is held.
func (m *metrics) showLinks() {
	if len(m.links.up) == 0 {
		m.sharedUp.Reset()
		return
	}
	up := 1.0
	for _, linkUp := range m.links.up {
		if !linkUp {
			up = 0
		}
	}
	m.sharedUp.WithLabelValues().Set(up)
}

func (m *metrics) observeWhitelistRefreshError(bot string) {
	m.whitelistRefresh.WithLabelValues(m.bots.label(bot)).Inc()
}

// breakerOpenGauge is the breaker_open series of a bot, which its breaker moves.
func (m *metrics) breakerOpenGauge(bot string) prometheus.Gauge {
	return m.breakerOpen.WithLabelValues(m.bots.label(bot))
}

// identityCallsInFlight is the identity_calls_in_flight series of a bot.
func (m *metrics) identityCallsInFlight(bot string) prometheus.Gauge {
	return m.callsInFlight.WithLabelValues(m.bots.label(bot))
}
