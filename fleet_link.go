package customauth

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// The breaker in front of the shared cache: after sharedBreakerFailures errors or
// timeouts in a row it is skipped for sharedBreakerOpenFor, then one call probes it.
const (
	sharedBreakerFailures = 3
	sharedBreakerOpenFor  = 5 * time.Second
)

var (
	errSharedCacheSkipped = errors.New("shared cache skipped after repeated errors (circuit breaker open)")
	errNotSynced          = errors.New("shared cache not read: the purge channel is down")
	errSlotMoved          = errors.New("the purge channel's slot moved to another shard")
)

// fleetLink is the process's connection to one shared cache: the client, a breaker,
// and the subscription through which purges arrive from every gateway of the fleet;
// its side of the purge protocol is purges (purge_channel.go).
type fleetLink struct {
	// id names this link on the purge channel (fleetPurges).
	id      string
	opt     rueidis.ClientOption
	secrets urlSecrets
	metrics *metrics
	now     func() time.Time
	logger  *zap.Logger
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
	purges  *fleetPurges

	// server is set once, before ready is closed.
	server pubsubServer
	// ready is closed once the client exists and the purge log was read: verdicts
	// may be read from then on.
	ready     chan struct{}
	readyOnce sync.Once
	// synced is true while the link is subscribed to the purge channel and has read
	// the purge log since: its marks are complete.
	synced atomic.Bool
	// breakerClosed mirrors the breaker's state for shared_cache_up.
	breakerClosed atomic.Bool

	cancel context.CancelFunc
	done   chan struct{} // closed when the background loop has stopped
}

func newFleetLink(opt rueidis.ClientOption, secrets urlSecrets, marks *purgeMarks, m *metrics, now func() time.Time, logger *zap.Logger) *fleetLink {
	ctx, cancel := context.WithCancel(context.Background())
	l := &fleetLink{
		id:      randomID(),
		opt:     opt,
		secrets: secrets,
		metrics: m,
		now:     now,
		logger:  logger,
		ready:   make(chan struct{}),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	l.purges = &fleetPurges{id: l.id, server: &l.server, ready: l.ready, marks: marks, secrets: secrets, now: now,
		logger: logger, acks: map[string]*purgeAcks{}}
	l.breakerClosed.Store(true)
	m.addLink(l.id)
	l.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          "shared cache",
		MaxRequests:   1,
		Timeout:       sharedBreakerOpenFor,
		ReadyToTrip:   func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= sharedBreakerFailures },
		IsExcluded:    func(err error) bool { return errors.Is(err, errNotSynced) },
		OnStateChange: l.breakerMoved,
	})
	l.showUp()
	go l.run(ctx)
	return l
}

// breakerMoved logs the breaker's changes and shows them in shared_cache_up. It runs
// under the breaker's lock: it must not call the breaker.
func (l *fleetLink) breakerMoved(_ string, from, to gobreaker.State) {
	switch to {
	case gobreaker.StateOpen:
		if from == gobreaker.StateClosed {
			l.logger.Warn("shared cache skipped after repeated errors; each gateway goes on with its local cache",
				zap.Duration("retry_in", sharedBreakerOpenFor))
		}
	case gobreaker.StateClosed:
		l.logger.Info("shared cache answers again")
	}
	l.breakerClosed.Store(to == gobreaker.StateClosed)
	l.showUp()
}

// showUp sets shared_cache_up: the link is up while its purge channel is synced and
// its breaker closed.
func (l *fleetLink) showUp() {
	l.metrics.observeLink(l.id, l.synced.Load() && l.breakerClosed.Load())
}

func (l *fleetLink) setSynced(synced bool) {
	l.synced.Store(synced)
	l.showUp()
}

// Destruct closes the connection once no config uses it.
func (l *fleetLink) Destruct() error {
	l.cancel()
	<-l.done
	l.metrics.forgetLink(l.id)
	return nil
}

// call runs one round trip through the breaker, once the link is ready. A miss is a
// success; an error or a timeout counts toward opening the breaker, and so does a
// server that has not been ready since the gateway started.
func (l *fleetLink) call(ctx context.Context, fn func(rueidis.Client) error) error {
	done, err := l.breaker.Allow()
	if err != nil {
		return errSharedCacheSkipped
	}
	select {
	case <-l.ready:
	case <-ctx.Done():
		done(errNotReady)
		return errNotReady
	}
	err = fn(l.server.client)
	if rueidis.IsRedisNil(err) {
		done(nil)
		return err
	}
	done(err)
	if err != nil && !errors.Is(err, errNotSynced) {
		err = l.secrets.scrub(err)
		l.logger.Debug("shared cache failed", zap.Error(err))
	}
	return err
}

// run creates the client and keeps the link subscribed to the purge channel until
// the link is destroyed.
func (l *fleetLink) run(ctx context.Context) {
	defer close(l.done)
	retry := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for failures := 0; ; failures++ {
		client, err := rueidis.NewClient(l.opt)
		if err == nil {
			l.server = pubsubServer{client: client, sharded: client.Mode() == rueidis.ClientModeCluster}
			break
		}
		// Without a server that answers, no client can tell a cluster from a
		// single server: try again.
		l.logDown(failures, "shared cache: cannot connect; verdicts are not shared until it answers", err)
		if !retry.wait(ctx) {
			return
		}
	}
	defer l.server.client.Close()
	retry.next = 0
	for failures := 0; ; failures++ {
		err := l.subscribe(ctx)
		if l.synced.Load() {
			// It worked until now: retry soon, say so, and read the purges
			// announced from about now on when it is back.
			failures, retry.next = 0, 0
			l.purges.lostAt.Store(l.now().UnixNano())
		}
		l.setSynced(false)
		if ctx.Err() != nil {
			return
		}
		l.logDown(failures, "shared cache: purge channel down; verdicts are not read from the shared cache until it is back", err)
		if !retry.wait(ctx) {
			return
		}
	}
}

// logDown logs a failure to connect: one warning when it starts, not one per retry.
// A failed TLS handshake names the options that decide it.
func (l *fleetLink) logDown(failures int, msg string, err error) {
	log := l.logger.Debug
	if failures == 0 {
		log = l.logger.Warn
	}
	if l.opt.TLSConfig != nil && failedHandshake(err) {
		msg += "; the TLS handshake failed: check tls_ca (the servers' CA) and tls_client (this gateway's certificate)"
	}
	log(msg, zap.Error(l.secrets.scrub(err)))
}

// failedHandshake reports whether a connection failed in its TLS handshake: the
// server's certificate was refused, TLS reported an alert, or the server dropped the
// connection, which is how a server that requires a client certificate refuses a
// missing one under TLS 1.3 (the client's side of the handshake has already ended).
func failedHandshake(err error) bool {
	var unverified *tls.CertificateVerificationError
	return err != nil && (errors.As(err, &unverified) || strings.Contains(err.Error(), "tls: ") ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF))
}

// backoff spaces out retries of a connection that keeps failing.
type backoff struct {
	min, max, next time.Duration
}

// wait waits for the next retry; false when ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	b.next = min(max(b.next*2, b.min), b.max)
	t := time.NewTimer(b.next)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// subscribe listens to the purge channel and this link's acknowledgements, catches up
// with what it may have missed, and returns when the subscription ends. While it
// lasts, it delivers every second the purges taken here that the shared cache does not
// have yet.
func (l *fleetLink) subscribe(ctx context.Context) error {
	dc, release := l.server.client.Dedicate()
	defer release()
	defer dc.Close() // a connection that carried subscriptions is not reused
	moved := make(chan error, 1)
	ended := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: l.purges.onMessage,
		OnSubscription: func(s rueidis.PubSubSubscription) {
			if s.Kind == "sunsubscribe" { // the server dropped a sharded subscription
				select {
				case moved <- errSlotMoved:
				default:
				}
			}
		},
	})
	if err := dc.Do(ctx, l.server.subscribeCommand(dc, l.id)).Error(); err != nil {
		return err
	}
	if err := l.purges.catchUp(ctx); err != nil {
		return err
	}
	l.setSynced(true)
	l.readyOnce.Do(func() { close(l.ready) })
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-ended:
			return err
		case err := <-moved:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			l.purges.deliver(ctx)
		}
	}
}

// Interface guard
var _ caddy.Destructor = (*fleetLink)(nil)
