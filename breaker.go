package customauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// BreakerSettings tunes the circuit breaker in front of a bot's identity API.
type BreakerSettings struct {
	// Consecutive errors (connection error, timeout, 5xx) that open the breaker.
	// Default: 5.
	Failures int `json:"failures,omitempty"`

	// How long the breaker stays open before one probe call is let through.
	// Default: 10s.
	OpenFor caddy.Duration `json:"open_for,omitempty"`
}

// Defaults of a breaker's settings.
const (
	defaultBreakerFailures = 5
	defaultBreakerOpenFor  = 10 * time.Second
)

// breaker skips calls to an identity API that keeps failing, so that an API that is
// down does not slow every chat request by the timeout. Each bot has its own: a bot
// whose API fails never makes another bot skip its API, even when both name the same
// auth_url.
type breaker struct {
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	gauge *breakerGauge
}

// breakerTuning is a bot's circuit_breaker settings, checked.
type breakerTuning struct {
	failures int
	openFor  time.Duration
}

func breakerTuningOf(cfg *BreakerSettings) (breakerTuning, error) {
	tuning := breakerTuning{failures: defaultBreakerFailures, openFor: defaultBreakerOpenFor}
	if cfg == nil {
		return tuning, nil
	}
	if cfg.Failures < 0 {
		return tuning, errors.New("failures: must not be negative")
	}
	if cfg.Failures > 0 {
		tuning.failures = cfg.Failures
	}
	var err error
	if tuning.openFor, err = durationOrDefault("open_for", cfg.OpenFor, defaultBreakerOpenFor); err != nil {
		return tuning, err
	}
	return tuning, nil
}

// newBreaker is a bot's breaker, which moves openGauge, the bot's breaker_open series.
func newBreaker(botID string, tuning breakerTuning, openGauge prometheus.Gauge) *breaker {
	gauge := &breakerGauge{series: openGauge}
	b := &breaker{gauge: gauge, cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          fmt.Sprintf("identity API of bot %q", botID),
		MaxRequests:   1, // one probe when half-open
		Timeout:       tuning.openFor,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(tuning.failures) },
		IsExcluded:    func(err error) bool { return errors.Is(err, errNoNewsOfAPI) },
		OnStateChange: func(_ string, _, to gobreaker.State) { gauge.set(to != gobreaker.StateClosed) },
	})}
	return b
}

// breakerGauge is a breaker's share of its bot label's breaker_open series: 1 while
// the breaker is open or half-open. gobreaker moves an open breaker to half-open on
// the first call after open_for, so an idle bot's stays open.
type breakerGauge struct {
	series prometheus.Gauge

	mu      sync.Mutex
	open    bool
	retired bool // its breaker is gone: it counts no more
}

func (g *breakerGauge) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired || g.open == open {
		return
	}
	g.open = open
	if open {
		g.series.Inc()
	} else {
		g.series.Dec()
	}
}

// retire takes a breaker that goes out of the gauge for good, so that a call still
// in flight that trips it does not count either.
func (b *breaker) retire() {
	g := b.gauge
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open {
		g.series.Dec()
		g.open = false
	}
	g.retired = true
}

var (
	errAPIDown     = errors.New("identity API down")
	errNoNewsOfAPI = errors.New("the call tells nothing about the identity API")
)

// allow reports whether a call may go out; done must then be told how it went.
func (b *breaker) allow() (done func(apiHealth), ok bool) {
	report, err := b.cb.Allow()
	if err != nil {
		return nil, false
	}
	return func(health apiHealth) {
		switch health {
		case apiDown:
			report(errAPIDown)
		case apiUnknown:
			report(errNoNewsOfAPI)
		default:
			report(nil)
		}
	}, true
}

// Destruct lets breakerPool hold breakers: the last config that used one is gone, so
// it no longer counts as open.
func (b *breaker) Destruct() error {
	b.retire()
	return nil
}

// breakerPool holds the breakers of bots listed in the config, by bot, URL and
// tuning, so that a config reload does not forget that an API is down; a breaker goes
// when no loaded config uses it. Remote bots' breakers are not here: each lives with
// its bot's cached settings, so keys that tenants choose never pile up.
var breakerPool = caddy.NewUsagePool()

// listedBreakers is one config's share of breakerPool; release gives it back.
type listedBreakers struct {
	keys []string
}

// load returns the breaker of a listed bot, the one an earlier config used if the bot
// kept its auth_url and tuning. A new one moves openGauge.
func (lb *listedBreakers) load(botID, url string, tuning breakerTuning, openGauge prometheus.Gauge) *breaker {
	key, _ := json.Marshal(struct {
		BotID, URL string
		Failures   int
		OpenFor    time.Duration
	}{botID, url, tuning.failures, tuning.openFor})
	v, _, _ := breakerPool.LoadOrNew(string(key), func() (caddy.Destructor, error) {
		return newBreaker(botID, tuning, openGauge), nil // cannot fail
	})
	lb.keys = append(lb.keys, string(key))
	return v.(*breaker)
}

func (lb *listedBreakers) release() error {
	var errs []error
	for _, key := range lb.keys {
		if _, err := breakerPool.Delete(key); err != nil {
			errs = append(errs, err)
		}
	}
	lb.keys = nil
	return errors.Join(errs...)
}
