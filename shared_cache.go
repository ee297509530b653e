package customauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// SharedCache is a Redis or Valkey deployment through which the gateways of a fleet
// share verdicts: a visitor verified by one gateway is served by every other without
// an API call. Each gateway keeps its local cache in front of it. Purges reach every
// gateway through it (see POST /custom-auth/purge).
type SharedCache struct {
	// The server: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS
	// (`valkey://` and `valkeys://` are synonyms). A cluster is named by seed nodes,
	// `redis://host1:port1?addr=host2:port2&addr=host3:port3`; Sentinels by their
	// addresses and the master's name, `redis://s1:26379?addr=s2:26379&master_set=name`.
	// The user and password are those of the servers (Redis 6 ACL). Global
	// placeholders such as `{env.REDIS_URL}` are expanded; the password is never
	// logged. Required.
	URL string `json:"url,omitempty"`

	// The longest a request waits for the shared cache; past it, or while the server
	// is down, the gateway goes on with its local cache and the identity API.
	// Default: 50ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// A PEM file of the CA certificates that the servers' certificates are checked
	// against, for a `rediss://` URL. Default: the system's roots.
	TLSCA string `json:"tls_ca,omitempty"`

	// A PEM certificate and its PEM key that the gateway presents to the servers
	// (mutual TLS), for a `rediss://` URL; both or neither. Default: none.
	TLSClientCert string `json:"tls_client_cert,omitempty"`
	TLSClientKey  string `json:"tls_client_key,omitempty"`
}

const defaultSharedTimeout = 50 * time.Millisecond

// sharedVerdictPrefix starts a verdict's key in the shared cache. Verdict keys are
// hashes (identityKey), never a token; each is a key of its own, so that on a cluster
// they spread over every slot.
const sharedVerdictPrefix = sharedPrefix + "verdict:"

// sharedCache is one config's use of a shared cache: the process's link to the server,
// shared by every config that names the same URL and TLS files, and this config's
// timeout.
type sharedCache struct {
	link    *fleetLink
	timeout time.Duration
	poolKey string
}

// linkPool holds the links to shared caches, so that a config reload keeps the
// connection, its subscription, its breaker and the purges it still has to deliver.
var linkPool = caddy.NewUsagePool()

// loadSharedCache connects a config to its shared cache; nil when it has none. Each
// call must be matched by a release.
func loadSharedCache(cfg *SharedCache, repl *caddy.Replacer, marks *purgeMarks, env *environment) (*sharedCache, error) {
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
	if err := cfg.loadTLS(&opt); err != nil {
		return nil, fmt.Errorf("shared_cache: %w", err)
	}
	timeout, err := durationOrDefault("shared_cache: timeout", cfg.Timeout, defaultSharedTimeout)
	if err != nil {
		return nil, err
	}
	// The key outlives the config; keep no password in it.
	sum := sha256.Sum256([]byte(strings.Join([]string{rawURL, cfg.TLSCA, cfg.TLSClientCert, cfg.TLSClientKey}, "\x00")))
	key := "shared_cache/" + hex.EncodeToString(sum[:])
	logger := env.logger.With(zap.String("shared_cache", redactURL(rawURL)))
	v, loaded, err := linkPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newFleetLink(opt, secretsOf(rawURL), marks, env.metrics, env.now, logger), nil
	})
	if err != nil {
		return nil, fmt.Errorf("shared_cache: %w", err)
	}
	if loaded {
		logger.Debug("reusing the shared cache's connection")
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

// sharedCacheOptions reads the URL of a server, a cluster or Sentinels. Its errors
// never quote the URL, which carries the password.
func sharedCacheOptions(raw string) (rueidis.ClientOption, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("invalid URL: %v", secretsOf(raw).scrub(err))
	}
	if err := checkSharedCacheParts(u); err != nil {
		return rueidis.ClientOption{}, err
	}
	opt, err := rueidis.ParseURL(raw)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("invalid URL: %v", secretsOf(raw).scrub(err))
	}
	opt.DisableCache = true // no client-side caching: the local cache is ours
	opt.DisableRetry = true // a request waits at most its timeout, once
	opt.Dialer.Timeout = 2 * time.Second
	opt.ClientName = "custom_auth"
	if opt.TLSConfig != nil {
		// Each node is checked under the name it is dialled by: the nodes of a
		// cluster and the master that Sentinels name are not the URL's host.
		opt.TLSConfig.ServerName = ""
	}
	if opt.Sentinel.MasterSet != "" {
		opt.Sentinel.Dialer = opt.Dialer
		opt.Sentinel.ClientName = opt.ClientName
		opt.Sentinel.TLSConfig = opt.TLSConfig
	}
	return opt, nil
}

// sharedCacheSchemes are the URL schemes of a shared cache, and whether each is TLS.
var sharedCacheSchemes = map[string]bool{"redis": false, "valkey": false, "rediss": true, "valkeys": true}

// checkSharedCacheParts checks what rueidis.ParseURL lets through: the scheme, the
// host and port, the database, and the query, which may only name more addresses
// (addr) and a Sentinel master (master_set).
func checkSharedCacheParts(u *url.URL) error {
	if _, ok := sharedCacheSchemes[u.Scheme]; !ok {
		return fmt.Errorf("the URL must start with redis://, rediss://, valkey:// or valkeys://, not %q", u.Scheme+":")
	}
	if u.Hostname() == "" {
		return errors.New("the URL has no host")
	}
	if err := checkPort(u.Port()); err != nil {
		return err
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return fmt.Errorf("the URL's path must be a database number, not %q", u.Path)
		}
	}
	if u.Fragment != "" {
		return errors.New("the URL must have no fragment")
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return errors.New("the URL's query is malformed")
	}
	for name, values := range query {
		switch name {
		case "addr":
			for _, addr := range values {
				if err := checkHostPort(addr); err != nil {
					return fmt.Errorf("addr: %w", err)
				}
			}
		case "master_set":
			if len(values) != 1 || values[0] == "" {
				return errors.New("master_set: give one name")
			}
		default:
			return fmt.Errorf("unknown query parameter %q: only addr and master_set are accepted", name)
		}
	}
	return nil
}

// checkHostPort checks one more address of a cluster or of Sentinels.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("%q is not host:port", addr)
	}
	return checkPort(port)
}

func checkPort(port string) error {
	if port == "" {
		return nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}

// loadTLS adds the private CA and the client certificate to a rediss:// connection.
// Its errors name the option and the file, never the URL.
func (cfg *SharedCache) loadTLS(opt *rueidis.ClientOption) error {
	if cfg.TLSCA == "" && cfg.TLSClientCert == "" && cfg.TLSClientKey == "" {
		return nil
	}
	if opt.TLSConfig == nil {
		return errors.New("tls_ca and tls_client need a rediss:// or valkeys:// URL")
	}
	if cfg.TLSCA != "" {
		pem, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return fmt.Errorf("tls_ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tls_ca: %s holds no PEM certificate", cfg.TLSCA)
		}
		opt.TLSConfig.RootCAs = roots
	}
	if cfg.TLSClientCert != "" || cfg.TLSClientKey != "" {
		if cfg.TLSClientCert == "" || cfg.TLSClientKey == "" {
			return errors.New("tls_client: give a certificate and its key")
		}
		cert, err := tls.LoadX509KeyPair(cfg.TLSClientCert, cfg.TLSClientKey)
		if err != nil {
			return fmt.Errorf("tls_client: %w", err)
		}
		opt.TLSConfig.Certificates = []tls.Certificate{cert}
	}
	return nil
}

// get reads a verdict from the shared cache, waiting at most the timeout. A value is
// a verdict only for the key it was stored under (sealVerdict): one copied to another
// key, or malformed, is a miss.
func (s *sharedCache) get(ctx context.Context, key string) (storedVerdict, sharedRead) {
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
	switch {
	case rueidis.IsRedisNil(err):
		return nil, sharedMiss
	case errors.Is(err, errNotSynced), errors.Is(err, errSharedCacheSkipped), errors.Is(err, errNotReady):
		return nil, sharedSkipped
	case err != nil:
		return nil, sharedError
	}
	v, err := openVerdict(key, raw)
	if err != nil {
		s.link.logger.Debug("shared cache: ignoring a value that is not a verdict of its key", zap.Error(err))
		return nil, sharedMiss
	}
	return v, sharedHit
}

// set stores a verdict in the shared cache for ttl, waiting at most the timeout.
func (s *sharedCache) set(ctx context.Context, key string, v storedVerdict, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_ = s.link.call(ctx, func(c rueidis.Client) error {
		return c.Do(ctx, c.B().Set().Key(sharedVerdictKey(key)).Value(rueidis.BinaryString(sealVerdict(key, v))).
			Px(max(ttl, time.Millisecond)).Build()).Error()
	})
}

func sharedVerdictKey(key string) string {
	return sharedVerdictPrefix + hex.EncodeToString([]byte(key))
}

// sealLen is the length of the seal in front of a verdict in the shared cache.
const sealLen = 16

// sealVerdict binds a verdict to the key it is stored under: the value is a hash of
// the key and the verdict, then the verdict. A value copied to another key, or
// changed, no longer matches its seal; so a random corruption is a miss too.
func sealVerdict(key string, v storedVerdict) []byte {
	seal := verdictSeal(key, v)
	return append(seal[:sealLen:sealLen], v...)
}

// openVerdict checks a value's seal against the key it was read under, then the
// verdict itself.
func openVerdict(key string, raw []byte) (storedVerdict, error) {
	if len(raw) < sealLen {
		return nil, errBadVerdict
	}
	v := storedVerdict(raw[sealLen:])
	seal := verdictSeal(key, v)
	if !hmac.Equal(seal[:sealLen], raw[:sealLen]) {
		return nil, errors.New("the value was stored under another key, or changed")
	}
	v, err := decodeVerdict(v)
	if err != nil {
		return nil, err
	}
	// The contact's fields are passed on as JSON (the assertion): a value whose JSON
	// is broken would fail the request.
	if res := v.verdict(); res.kind == verdictVerified && !json.Valid(res.identity.raw()) {
		return nil, errBadVerdict
	}
	return v, nil
}

func verdictSeal(key string, v storedVerdict) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte("shared verdict\x00"))
	h.Write([]byte(key))
	h.Write(v)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
