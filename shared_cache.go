package customauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// SharedCache is a Redis or Valkey server through which the gateways of a fleet share
// verdicts: a visitor verified by one gateway is served by every other without an API
// call. Each gateway keeps its local cache in front of it. Purges reach every gateway
// through it (see POST /custom-auth/purge).
type SharedCache struct {
	// The server: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
	// Global placeholders such as `{env.REDIS_URL}` are expanded; the password is
	// never logged. Required.
	URL string `json:"url,omitempty"`

	// The longest a request waits for the shared cache; past it, or while the server
	// is down, the gateway goes on with its local cache and the identity API.
	// Default: 50ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

const defaultSharedTimeout = 50 * time.Millisecond

// Names in the shared cache. Verdict keys are hashes (identityKey), never a token.
const (
	sharedPrefix        = "custom_auth:v1:"
	sharedVerdictPrefix = sharedPrefix + "verdict:"
	// purgeChannel announces purges to every gateway; each answers on the channel of
	// the gateway that purged, purgeAckPrefix + its link id.
	purgeChannel   = sharedPrefix + "purge"
	purgeAckPrefix = sharedPrefix + "purged:"
	// purgeLogKey holds the purges of the last purgeLogKeep, by time: a gateway that
	// (re)subscribes reads the purges it may have missed there.
	purgeLogKey  = sharedPrefix + "purges"
	purgeLogKeep = time.Hour
	// purgeLogSlack is read again before the moment a subscription was lost: a
	// connection may be dead for a while before it is seen to be.
	purgeLogSlack = time.Minute
)

// The breaker in front of the shared cache: after sharedBreakerFailures errors or
// timeouts in a row it is skipped for sharedBreakerOpenFor, then one call probes it.
const (
	sharedBreakerFailures = 3
	sharedBreakerOpenFor  = 5 * time.Second
)

// sharedCache is one config's use of a shared cache: the process's link to the server,
// shared by every config that names the same URL, and this config's timeout.
type sharedCache struct {
	link    *fleetLink
	timeout time.Duration
	poolKey string
}

// linkPool holds the links to shared caches by URL, so that a config reload keeps the
// connection, its subscription and its breaker.
var linkPool = caddy.NewUsagePool()

// loadSharedCache connects a config to its shared cache; nil when it has none. Each
// call must be matched by a release.
func loadSharedCache(cfg *SharedCache, repl *caddy.Replacer, marks *purgeMarks, logger *zap.Logger) (*sharedCache, error) {
	if cfg == nil {
		return nil, nil
	}
	if cfg.URL == "" {
		return nil, errors.New("shared_cache: the URL is required")
	}
	rawURL, err := expandConfigured("shared_cache", cfg.URL, func(s string) string { return repl.ReplaceKnown(s, "") })
	if err != nil {
		return nil, err
	}
	opt, err := sharedCacheOptions(rawURL)
	if err != nil {
		return nil, fmt.Errorf("shared_cache: %w", err)
	}
	timeout, err := durationOrDefault("shared_cache: timeout", cfg.Timeout, defaultSharedTimeout)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(rawURL)) // the key outlives the config; keep no password in it
	key := "shared_cache/" + hex.EncodeToString(sum[:])
	v, loaded, err := linkPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newFleetLink(opt, secretsOf(rawURL), marks, logger.With(zap.String("shared_cache", redactURL(rawURL)))), nil
	})
	if err != nil {
		return nil, fmt.Errorf("shared_cache: %w", err)
	}
	if loaded {
		logger.Debug("reusing the shared cache's connection", zap.String("shared_cache", redactURL(rawURL)))
	}
	return &sharedCache{link: v.(*fleetLink), timeout: timeout, poolKey: key}, nil
}

func (s *sharedCache) release() error {
	_, err := linkPool.Delete(s.poolKey)
	return err
}

// checkSharedCacheURL checks a shared cache URL; its error never quotes the URL.
func checkSharedCacheURL(raw string) error {
	_, err := sharedCacheOptions(raw)
	return err
}

// sharedCacheOptions reads `redis://[user:password@]host:port[/db]` (`rediss://` for
// TLS). Its errors never quote the URL, which carries the password.
func sharedCacheOptions(raw string) (rueidis.ClientOption, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("invalid URL: %v", redactURLError(err))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return rueidis.ClientOption{}, fmt.Errorf("the URL must start with redis:// or rediss://, not %q", u.Scheme+":")
	}
	if u.Hostname() == "" {
		return rueidis.ClientOption{}, errors.New("the URL has no host")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return rueidis.ClientOption{}, fmt.Errorf("invalid port %q", port)
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return rueidis.ClientOption{}, fmt.Errorf("the URL's path must be a database number, not %q", u.Path)
		}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return rueidis.ClientOption{}, errors.New("the URL must have no query or fragment")
	}
	opt, err := rueidis.ParseURL(raw)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("invalid URL: %v", secretsOf(raw).scrub(err))
	}
	opt.ForceSingleClient = true // a standalone server; dial in the background
	opt.DisableCache = true      // no client-side caching: the local cache is ours
	opt.DisableRetry = true      // a request waits at most its timeout, once
	opt.Dialer.Timeout = 2 * time.Second
	opt.ClientName = "custom_auth"
	return opt, nil
}

// get reads a verdict from the shared cache, waiting at most the timeout; a miss, an
// error and a skipped call are all "not found".
func (s *sharedCache) get(ctx context.Context, key string) (verdict, bool) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var raw []byte
	err := s.link.call(ctx, func(c rueidis.Client) error {
		if !s.link.synced.Load() {
			// Marks may be missing while the purge channel is down: a verdict read
			// now could be one that was purged. Not the server's fault.
			return errNotSynced
		}
		var err error
		raw, err = c.Do(ctx, c.B().Get().Key(sharedVerdictKey(key)).Build()).AsBytes()
		return err
	})
	if err != nil {
		return nil, false
	}
	v, err := decodeVerdict(raw)
	if err != nil {
		s.link.logger.Debug("shared cache: ignoring a value that is not a verdict", zap.Error(err))
		return nil, false
	}
	return v, true
}

// set stores a verdict in the shared cache for ttl, waiting at most the timeout.
func (s *sharedCache) set(ctx context.Context, key string, v verdict, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_ = s.link.call(ctx, func(c rueidis.Client) error {
		return c.Do(ctx, c.B().Set().Key(sharedVerdictKey(key)).Value(rueidis.BinaryString(v)).
			Px(max(ttl, time.Millisecond)).Build()).Error()
	})
}

func sharedVerdictKey(key string) string {
	return sharedVerdictPrefix + hex.EncodeToString([]byte(key))
}

// sharedVerdict looks a verdict up in the shared cache after a local miss. One found
// is served as a local one would be: while it is younger than the bot's TTL now and
// no purge mark covers it; it is then kept locally for the rest of its TTL.
func (ci *cachedIdentifier) sharedVerdict(ctx context.Context, key string, b *botSettings, req identityRequest) (lookupResult, bool) {
	if ci.shared == nil {
		return lookupResult{}, false
	}
	v, ok := ci.shared.get(ctx, key)
	if !ok {
		return lookupResult{}, false
	}
	res, stored := v.lookupResult(), v.stored()
	ttl := cacheTTL(b, res)
	age := ci.now().Sub(stored)
	if age >= ttl || ci.marks.hides(req.markedBot(b), req.token, res, stored, ttl) {
		return lookupResult{}, false
	}
	ci.caches.storeVerdict(key, v, stored, stored.Add(ttl), ttl-age)
	res.cacheHit = true
	return res, true
}

// shareVerdict stores a verdict the identity API just gave in the shared cache.
func (ci *cachedIdentifier) shareVerdict(ctx context.Context, key string, v verdict, ttl time.Duration) {
	if ci.shared != nil {
		ci.shared.set(ctx, key, v, ttl)
	}
}

var (
	errSharedCacheSkipped = errors.New("shared cache skipped after repeated errors (circuit breaker open)")
	errNotSynced          = errors.New("shared cache not read: the purge channel is down")
	errNotReady           = errors.New("the shared cache has not answered since the gateway started")
)

// fleetLink is the process's connection to one shared cache: the client, a breaker,
// and the subscription through which purges arrive from every gateway of the fleet.
type fleetLink struct {
	// id names this link on the purge channel: acknowledgements of its purges come
	// back on purgeAckPrefix + id.
	id      string
	opt     rueidis.ClientOption
	secrets urlSecrets
	marks   *purgeMarks
	logger  *zap.Logger
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]

	// client is set once, before ready is closed.
	client rueidis.Client
	// ready is closed once the client exists and the purge log was read: verdicts
	// may be read from then on.
	ready     chan struct{}
	readyOnce sync.Once
	// synced is true while the link is subscribed to the purge channel and has read
	// the purge log since: its marks are complete.
	synced atomic.Bool
	// lostAt is when the last subscription that was synced ended (Unix
	// nanoseconds); zero until one did.
	lostAt atomic.Int64

	acksMu sync.Mutex
	acks   map[string]*purgeAcks // by purge id, the purges of this link in flight

	cancel context.CancelFunc
	done   chan struct{} // closed when the background loop has stopped
}

func newFleetLink(opt rueidis.ClientOption, secrets urlSecrets, marks *purgeMarks, logger *zap.Logger) *fleetLink {
	ctx, cancel := context.WithCancel(context.Background())
	l := &fleetLink{
		id:      randomID(),
		opt:     opt,
		secrets: secrets,
		marks:   marks,
		logger:  logger,
		ready:   make(chan struct{}),
		acks:    map[string]*purgeAcks{},
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	l.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "shared cache",
		MaxRequests: 1,
		Timeout:     sharedBreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= sharedBreakerFailures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errNotSynced) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				if from == gobreaker.StateClosed {
					logger.Warn("shared cache skipped after repeated errors; gateways go on with their local caches",
						zap.Duration("retry_in", sharedBreakerOpenFor))
				}
			case gobreaker.StateClosed:
				logger.Info("shared cache answers again")
			}
		},
	})
	go l.run(ctx)
	return l
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Destruct closes the connection once no config uses it.
func (l *fleetLink) Destruct() error {
	l.cancel()
	<-l.done
	return nil
}

// call runs one round trip through the breaker, once the link is ready. A miss is a
// success; an error or a timeout counts toward opening the breaker, and so does a
// server that has not answered since the gateway started.
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
	err = fn(l.client)
	if rueidis.IsRedisNil(err) {
		err = nil
		done(nil)
		return rueidis.Nil
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
	for {
		client, err := rueidis.NewClient(l.opt)
		if client != nil {
			// With ForceSingleClient the client exists even when the first dial
			// failed; it dials again on use.
			l.client = client
			break
		}
		l.logger.Error("shared cache: cannot create its client", zap.Error(l.secrets.scrub(err)))
		if !retry.wait(ctx) {
			return
		}
	}
	defer l.client.Close()
	for failures := 0; ; failures++ {
		err := l.subscribe(ctx)
		if l.synced.Load() {
			// It worked until now: retry soon, say so, and read the purges
			// announced from about now on when it is back.
			failures, retry.next = 0, 0
			l.lostAt.Store(time.Now().UnixNano())
		}
		l.synced.Store(false)
		if ctx.Err() != nil {
			return
		}
		// One warning when the channel goes down, not one per retry.
		log := l.logger.Debug
		if failures == 0 {
			log = l.logger.Warn
		}
		log("shared cache: purge channel down; verdicts are not read from the shared cache until it is back",
			zap.Error(l.secrets.scrub(err)))
		if !retry.wait(ctx) {
			return
		}
	}
}

// subscribe listens to the purge channel and this link's acknowledgements, reads the
// purge log for what it may have missed, and returns when the subscription ends.
func (l *fleetLink) subscribe(ctx context.Context) error {
	dc, release := l.client.Dedicate()
	defer release()
	defer dc.Close() // a connection that carried subscriptions is not reused
	ended := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: l.onMessage})
	if err := dc.Do(ctx, dc.B().Subscribe().Channel(purgeChannel, purgeAckPrefix+l.id).Build()).Error(); err != nil {
		return err
	}
	if err := l.readPurgeLog(ctx); err != nil {
		return err
	}
	if l.lostAt.Load() != 0 {
		l.logger.Info("shared cache: purge channel back; the purges announced meanwhile were read from the purge log")
	}
	l.synced.Store(true)
	l.readyOnce.Do(func() { close(l.ready) })
	select {
	case err := <-ended:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readPurgeLog applies the purges announced while this link was not subscribed: the
// whole log until the link was first synced, else from a little before the last synced
// subscription was lost. Marks older than the log may be missing, so a whole read
// raises the floor to its start.
func (l *fleetLink) readPurgeLog(ctx context.Context) error {
	since := time.Now().Add(-purgeLogKeep)
	whole := true
	if lost := l.lostAt.Load(); lost != 0 && time.Unix(0, lost).Add(-purgeLogSlack).After(since) {
		since, whole = time.Unix(0, lost).Add(-purgeLogSlack), false
	}
	ctx, cancel := context.WithTimeout(ctx, purgeTimeout)
	defer cancel()
	entries, err := l.client.Do(ctx, l.client.B().Zrange().Key(purgeLogKey).
		Min(strconv.FormatInt(since.UnixMilli(), 10)).Max("+inf").Byscore().Build()).AsStrSlice()
	if err != nil {
		return err
	}
	for _, entry := range entries {
		var n purgeNotice
		if json.Unmarshal([]byte(entry), &n) != nil {
			continue
		}
		if ref, err := n.markRef(); err == nil {
			l.marks.set(ref)
		}
	}
	if whole {
		l.marks.raiseFloor(since)
	}
	return nil
}

// onMessage applies a purge announced by a gateway and acknowledges it, or counts an
// acknowledgement of one of this link's purges.
func (l *fleetLink) onMessage(m rueidis.PubSubMessage) {
	if id, ok := strings.CutPrefix(m.Channel, purgeAckPrefix); ok && id == l.id {
		l.acked(m.Message)
		return
	}
	var n purgeNotice
	if json.Unmarshal([]byte(m.Message), &n) != nil {
		return
	}
	ref, err := n.markRef()
	if err != nil {
		return
	}
	l.marks.set(ref)
	if n.Reply == "" || !strings.HasPrefix(n.Reply, purgeAckPrefix) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), purgeTimeout)
	defer cancel()
	if err := l.client.Do(ctx, l.client.B().Publish().Channel(n.Reply).Message(n.ID).Build()).Error(); err != nil {
		l.logger.Warn("shared cache: cannot acknowledge a purge", zap.Error(l.secrets.scrub(err)))
	}
}

// purgeAcks counts the gateways that applied a purge.
type purgeAcks struct {
	count  atomic.Int64
	signal chan struct{} // one pending wake-up at most
}

func (l *fleetLink) acked(id string) {
	l.acksMu.Lock()
	acks := l.acks[id]
	l.acksMu.Unlock()
	if acks != nil {
		acks.count.Add(1)
		select {
		case acks.signal <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// announce records a purge in the shared cache (its log, and the deletion of the
// purged token's verdicts) and tells every gateway, then waits until each gateway
// that received it has applied it. It returns how many did, this one included.
func (l *fleetLink) announce(ctx context.Context, n purgeNotice, verdictKeys []string) (int, error) {
	select {
	case <-l.ready:
	case <-ctx.Done():
		return 0, errNotReady
	}
	n.Reply = purgeAckPrefix + l.id
	msg, err := json.Marshal(n)
	if err != nil {
		return 0, err
	}
	// Acknowledgements may arrive before PUBLISH answers how many to expect.
	acks := &purgeAcks{signal: make(chan struct{}, 1)}
	l.acksMu.Lock()
	l.acks[n.ID] = acks
	l.acksMu.Unlock()
	defer func() {
		l.acksMu.Lock()
		delete(l.acks, n.ID)
		l.acksMu.Unlock()
	}()

	c := l.client
	now := time.Now()
	cmds := make(rueidis.Commands, 0, 4+len(verdictKeys))
	for _, key := range verdictKeys {
		cmds = append(cmds, c.B().Del().Key(key).Build())
	}
	cmds = append(cmds,
		c.B().Zadd().Key(purgeLogKey).ScoreMember().ScoreMember(float64(time.Unix(0, n.At).UnixMilli()), string(msg)).Build(),
		c.B().Zremrangebyscore().Key(purgeLogKey).Min("-inf").Max(strconv.FormatInt(now.Add(-purgeLogKeep).UnixMilli(), 10)).Build(),
		c.B().Pexpire().Key(purgeLogKey).Milliseconds(purgeLogKeep.Milliseconds()).Build(),
		c.B().Publish().Channel(purgeChannel).Message(string(msg)).Build(),
	)
	results := c.DoMulti(ctx, cmds...)
	for _, r := range results {
		if err := r.Error(); err != nil {
			return 0, l.secrets.scrub(err)
		}
	}
	receivers, err := results[len(results)-1].AsInt64()
	if err != nil {
		return 0, l.secrets.scrub(err)
	}
	for acks.count.Load() < receivers {
		select {
		case <-acks.signal:
		case <-ctx.Done():
			return int(acks.count.Load()), fmt.Errorf("%d of the %d gateways listening confirmed the purge in time", acks.count.Load(), receivers)
		}
	}
	return int(receivers), nil
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

// Interface guard
var _ caddy.Destructor = (*fleetLink)(nil)
