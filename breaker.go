package customauth

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// breaker skips calls to an identity API that keeps failing, so that an API that is
// down does not slow every chat request by the timeout. It is shared by every bot that
// uses the same API with the same settings, and by successive configs, so a reload
// does not forget that an API is down.
type breaker struct {
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// breakers holds one breaker per identity API URL and settings, for the process.
var breakers sync.Map // breakerKey -> *breaker

type breakerKey struct {
	url      string
	failures int
	openFor  time.Duration
}

func newBreaker(url string, cfg *BreakerSettings) (*breaker, error) {
	key := breakerKey{url: url, failures: defaultBreakerFailures, openFor: defaultBreakerOpenFor}
	if cfg != nil {
		if cfg.Failures < 0 {
			return nil, errors.New("failures: must not be negative")
		}
		if cfg.Failures > 0 {
			key.failures = cfg.Failures
		}
		var err error
		if key.openFor, err = durationOrDefault("open_for", cfg.OpenFor, defaultBreakerOpenFor); err != nil {
			return nil, err
		}
	}
	if b, ok := breakers.Load(key); ok {
		return b.(*breaker), nil
	}
	b, _ := breakers.LoadOrStore(key, &breaker{cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        fmt.Sprintf("identity API %s", url),
		MaxRequests: 1, // one probe when half-open
		Timeout:     key.openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(key.failures) },
	})})
	return b.(*breaker), nil
}

// allow reports whether a call may go out; done must then be told how it went.
func (b *breaker) allow() (done func(apiDown bool), ok bool) {
	report, err := b.cb.Allow()
	if err != nil {
		return nil, false
	}
	return func(apiDown bool) {
		if apiDown {
			report(errAPIDown)
		} else {
			report(nil)
		}
	}, true
}

var errAPIDown = errors.New("identity API down")
