package customauth

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/rueidis"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// redisServer is a real redis-server that a test started on a free loopback port.
type redisServer struct {
	port int
	args []string
	// conf is a config file, for a Sentinel; ready is the line that says the server
	// is up (default: "Ready to accept connections"); tls: it listens with TLS only.
	conf, ready string
	tls         bool

	mu  sync.Mutex
	cmd *exec.Cmd
}

// startRedis runs redis-server with no persistence on a free loopback port and waits
// until it answers PING. Without redis-server the test is skipped, except under CI,
// which installs it: there the test fails.
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	return runRedis(t, &redisServer{args: args})
}

// requireTool skips a test without a tool, except under CI, which installs it.
func requireTool(t testing.TB, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (apt-get install %s): %v", tool, pkg, err)
		}
		t.Skipf("%s is not installed (apt-get install %s); skipping: %v", tool, pkg, err)
	}
}

// runRedis starts r on a free port; see startRedis.
func runRedis(t testing.TB, r *redisServer) *redisServer {
	t.Helper()
	requireTool(t, "redis-server", "redis-server")
	var err error
	for range 3 { // another process may take the free port before redis-server does
		r.port = freePort(t)
		if err = r.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	return r
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs the server on r.port and waits until it says it is ready and PING
// answers.
func (r *redisServer) start() error {
	var args []string
	if r.conf != "" {
		args = append(args, r.conf)
	}
	args = append(args, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if r.tls {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(r.port))
	}
	cmd := exec.Command("redis-server", append(args, r.args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan error, 1)
	go func() {
		var log strings.Builder
		scanner := bufio.NewScanner(out)
		for scanner.Scan() {
			line := scanner.Text()
			log.WriteString(line + "\n")
			if strings.Contains(line, cmp.Or(r.ready, "Ready to accept connections")) {
				ready <- nil
				for scanner.Scan() { // keep the pipe drained
				}
				return
			}
		}
		ready <- fmt.Errorf("redis-server on port %d exited before it was ready:\n%s", r.port, log.String())
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("redis-server on port %d: not ready within 10s", r.port)
	}
	if err == nil && !r.tls {
		err = r.ping()
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
	return nil
}

func (r *redisServer) ping() error {
	conn, err := net.DialTimeout("tcp", r.addr(), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// url is the server's URL; path may name a database ("/0"), which also gives a
// second link to the same server in one process.
func (r *redisServer) url(path string) string { return "redis://" + r.addr() + path }

// stop kills the server and waits until it has exited.
func (r *redisServer) stop() {
	r.mu.Lock()
	cmd := r.cmd
	r.cmd = nil
	r.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// signal sends a signal to the server: SIGSTOP makes it hang, SIGCONT resumes it.
func (r *redisServer) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// redisClient is a plain client of the test's server, to look at what the gateways
// stored.
func redisClient(t testing.TB, r *redisServer) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// gatewayCacheSize gives each gateway of a test its own local cache: configs of the
// same cache_size and bots share theirs.
func gatewayCacheSize() int64 { return 8<<20 + gatewayCacheSizes.Add(1) }

var gatewayCacheSizes atomic.Int64

// fleetHandler is a gateway of a fleet in this process: its own local cache and
// marks, sharing verdicts through the shared cache at url. Two URLs that name the
// same server differently give two links, as two gateways would have.
func fleetHandler(t testing.TB, api *identityAPI, url string, bot *Bot) *Handler {
	t.Helper()
	bot.AuthURL = api.URL
	return provision(t, &Handler{
		CacheSize:   gatewayCacheSize(),
		marks:       newPurgeMarks(),
		SharedCache: &SharedCache{URL: url, Timeout: caddy.Duration(2 * time.Second)},
		Bots:        map[string]*Bot{"shop": bot},
	})
}

func TestSharedCacheServesOtherGateways(t *testing.T) {
	r := startRedis(t)
	api := newIdentityAPI(t)
	first := fleetHandler(t, api, r.url(""), &Bot{})
	second := fleetHandler(t, api, r.url("/0"), &Bot{})

	for _, h := range []*Handler{first, second, first} {
		if got := verify(t, h, "alice-token"); got != "verified/" {
			t.Fatalf("outcome %s", got)
		}
	}
	if n := api.calls.Load(); n != 1 {
		t.Errorf("%d API calls for one visitor on two gateways, want 1", n)
	}
	// A rejection is shared too, for negative_ttl.
	for _, h := range []*Handler{first, second} {
		if got := verify(t, h, "wrong-token"); got != "fallback/rejected" {
			t.Fatalf("outcome %s", got)
		}
	}
	if n := api.calls.Load(); n != 2 {
		t.Errorf("%d API calls after a shared rejection, want 2", n)
	}

	// The keys are hashes: no token in the shared cache.
	c := redisClient(t, r)
	keys, err := c.Do(t.Context(), c.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		if strings.Contains(key, "alice") || strings.Contains(key, "wrong") {
			t.Errorf("key %q carries the token", key)
		}
	}
	ttl, err := c.Do(t.Context(), c.B().Pttl().Key(sharedVerdictKey(identityKey(first.bots["shop"], identityRequest{token: "alice-token"}))).Build()).AsInt64()
	if err != nil || ttl <= 0 || ttl > defaultCacheTTL.Milliseconds() {
		t.Errorf("the verified verdict's TTL in the shared cache is %dms (%v), want at most cache_ttl", ttl, err)
	}
}

func TestSharedCacheRespectsTheLocalTTL(t *testing.T) {
	r := startRedis(t)
	api := newIdentityAPI(t)
	first := fleetHandler(t, api, r.url(""), &Bot{})
	clk := newClock()
	clk.now = time.Now().Add(time.Minute)
	second := fleetHandler(t, api, r.url("/0"), &Bot{CacheTTL: dur(30 * time.Second)})
	second.now = clk.Now
	second.identities.(*cachedIdentifier).now = clk.Now

	verify(t, first, "alice-token")
	// A minute later, by the second gateway's clock, the shared verdict is older than
	// its cache_ttl: it asks the API.
	if got := verify(t, second, "alice-token"); got != "verified/" {
		t.Fatalf("outcome %s", got)
	}
	if n := api.calls.Load(); n != 2 {
		t.Errorf("%d API calls, want 2: a shared verdict older than the TTL was served", n)
	}
}

// TestSharedCacheSlowOrDown: requests never wait longer than the timeout for a
// shared cache that hangs, and after a few failures not at all: the breaker skips it.
func TestSharedCacheSlowOrDown(t *testing.T) {
	r := startRedis(t)
	api := newIdentityAPI(t)
	h := provision(t, &Handler{
		CacheSize:   gatewayCacheSize(),
		marks:       newPurgeMarks(),
		SharedCache: &SharedCache{URL: r.url(""), Timeout: caddy.Duration(100 * time.Millisecond)},
		Bots:        map[string]*Bot{"shop": {AuthURL: api.URL, CacheTTL: dur(0), NegativeTTL: dur(time.Minute)}},
	})
	// Rejections are cached; each token is new, so each request misses locally.
	verify(t, h, "warm-up-token")
	r.signal(t, syscall.SIGSTOP)
	defer r.signal(t, syscall.SIGCONT)

	var took []time.Duration
	for i := range sharedBreakerFailures + 3 {
		start := time.Now()
		if got := verify(t, h, fmt.Sprintf("token-%d", i)); got != "fallback/rejected" {
			t.Fatalf("request %d: outcome %s", i, got)
		}
		took = append(took, time.Since(start))
	}
	// A miss waits for the GET, then for the SET after the API call: twice the
	// timeout at most, plus the API.
	for i, d := range took[:sharedBreakerFailures/2] {
		if d > 2*100*time.Millisecond+time.Second {
			t.Errorf("request %d took %v with a hanging shared cache, want at most twice the timeout", i, d)
		}
	}
	for i, d := range took[sharedBreakerFailures:] {
		if d > 50*time.Millisecond {
			t.Errorf("request %d after the breaker opened took %v, want no wait for the shared cache", sharedBreakerFailures+i, d)
		}
	}
	if n := api.calls.Load(); n != int64(len(took))+1 {
		t.Errorf("%d API calls, want %d", n, len(took)+1)
	}
}

func TestSharedCacheURLs(t *testing.T) {
	const password = "hunter2-very-secret"
	for _, tc := range []struct {
		url, wantErr string
	}{
		{"redis://127.0.0.1:6379", ""},
		{"redis://:" + password + "@127.0.0.1:6379/2", ""},
		{"redis://user:" + password + "@cache.internal", ""},
		{"rediss://user:" + password + "@cache.example.com:6380/0", ""},
		{"http://user:" + password + "@cache.internal", `must start with redis://, rediss://, valkey:// or valkeys://, not "http:"`},
		{"redis://user:" + password + "@", "has no host"},
		{"redis://user:" + password + "@cache:port", "invalid URL"},
		{"redis://user:" + password + "@cache:70000", `invalid port "70000"`},
		{"redis://user:" + password + "@cache:6379/zero", "must be a database number"},
		{"redis://user:" + password + "@cache:6379/0?dial_timeout=1s", `unknown query parameter "dial_timeout"`},
		{"redis://user:" + password + "@cache:6379/0#x", "no fragment"},
		{"valkey://user:" + password + "@cache.internal:6379", ""},
		{"valkeys://user:" + password + "@cache.internal:6379", ""},
		{"redis://user:" + password + "@h1:7000?addr=h2:7001&addr=h3:7002", ""},
		{"redis://user:" + password + "@s1:26379?addr=s2:26379&master_set=cache", ""},
		{"redis://user:" + password + "@h1:7000?addr=h2", `addr: "h2" is not host:port`},
		{"redis://user:" + password + "@h1:7000?addr=h2:99999", `addr: invalid port "99999"`},
		{"redis://user:" + password + "@s1:26379?master_set=", "master_set: give one name"},
		{"redis://user:" + password + "@s1:26379?master_set=a&master_set=b", "master_set: give one name"},
		{"redis://user:" + password + "@s1:26379?%zz", "query is malformed"},
		{"redis://user:" + password + "@cache:6379/0/1", "must be a database number"},
		{"cache:6379", "must start with redis://"},
	} {
		opt, err := sharedCacheOptions(tc.url)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.url, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want %q", tc.url, err, tc.wantErr)
		case err != nil && strings.Contains(err.Error(), password):
			t.Errorf("%s: the error shows the password: %v", tc.url, err)
		}
		if err == nil && strings.HasPrefix(tc.url, "rediss://") && opt.TLSConfig == nil {
			t.Errorf("%s: no TLS", tc.url)
		}
	}
}

// TestSharedCacheNeverShowsThePassword: a wrong password, a server that goes away and
// a bad URL log and return errors, none of which shows the password.
func TestSharedCacheNeverShowsThePassword(t *testing.T) {
	const password = "hunter2-very-secret"
	r := startRedis(t, "--requirepass", "the-right-one")
	api := newIdentityAPI(t)
	core, logs := observer.New(zapcore.DebugLevel)
	h := provision(t, &Handler{
		CacheSize:   gatewayCacheSize(),
		marks:       newPurgeMarks(),
		logger:      zap.New(core),
		SharedCache: &SharedCache{URL: "redis://default:" + password + "@" + r.addr(), Timeout: caddy.Duration(200 * time.Millisecond)},
		Bots:        map[string]*Bot{"shop": {AuthURL: api.URL}},
	})
	for i := range sharedBreakerFailures + 1 {
		if got := verify(t, h, fmt.Sprintf("token-%d", i)); got != "fallback/rejected" {
			t.Fatalf("outcome %s", got)
		}
	}
	r.stop()
	verify(t, h, "one-more-token")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := purgeHandlers(ctx, []*Handler{h}, purgeRequest{Bot: "shop"})
	if err == nil {
		t.Error("a purge whose fleet could not be told succeeded")
	}
	h.Cleanup() // waits for the link to stop logging

	var errs []string
	if err != nil {
		errs = append(errs, err.Error())
	}
	for _, cfg := range []*SharedCache{{URL: "redis://u:" + password + "@host:port"}, {URL: "ftp://u:" + password + "@host"}} {
		_, err := loadSharedCache(cfg, caddy.NewReplacer(), newPurgeMarks(), &environment{logger: zap.NewNop(), metrics: newProcessMetrics(), now: time.Now})
		if err == nil {
			t.Fatalf("%s: no error", cfg.URL)
		}
		errs = append(errs, err.Error())
	}
	if logs.Len() == 0 {
		t.Error("nothing was logged: the test shows nothing")
	}
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		errs = append(errs, line)
	}
	for _, line := range errs {
		if strings.Contains(line, password) {
			t.Errorf("the password is shown: %s", line)
		}
	}
}

func TestNoGoroutineLeftAfterSharedCacheCleanup(t *testing.T) {
	r := startRedis(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	api := newIdentityAPI(t)
	h := &Handler{
		CacheSize:   gatewayCacheSize(),
		marks:       newPurgeMarks(),
		SharedCache: &SharedCache{URL: r.url("/3"), Timeout: caddy.Duration(time.Second)},
		Bots:        map[string]*Bot{"shop": {AuthURL: api.URL}},
		logger:      zap.NewNop(),
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	verify(t, h, "alice-token")
	if _, err := purgeHandlers(ctx, []*Handler{h}, purgeRequest{Bot: "shop"}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	api.Close()
}

func TestSharedCacheCaddyfile(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`custom_auth {
		shared_cache {env.REDIS_URL} {
			timeout 80ms
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (SharedCache{URL: "{env.REDIS_URL}", Timeout: caddy.Duration(80 * time.Millisecond)}); h.SharedCache == nil || *h.SharedCache != want {
		t.Errorf("shared_cache = %+v, want %+v", h.SharedCache, want)
	}
	h = Handler{}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("custom_auth {\nshared_cache rediss://cache.internal:6380 {\ntls_ca ca.pem\ntls_client gw.pem gw.key\n}\n}")); err != nil {
		t.Fatal(err)
	}
	if want := (SharedCache{URL: "rediss://cache.internal:6380", TLSCA: "ca.pem", TLSClientCert: "gw.pem", TLSClientKey: "gw.key"}); *h.SharedCache != want {
		t.Errorf("shared_cache with TLS = %+v, want %+v", h.SharedCache, want)
	}
	h = Handler{}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("custom_auth {\nshared_cache rediss://cache.internal:6380/1\n}")); err != nil {
		t.Fatal(err)
	}
	if h.SharedCache == nil || h.SharedCache.URL != "rediss://cache.internal:6380/1" || h.SharedCache.Timeout != 0 {
		t.Errorf("shared_cache without a block = %+v", h.SharedCache)
	}

	const password = "hunter2-very-secret"
	for _, tc := range []struct {
		name, input, wantErr string
	}{
		{"no URL", "shared_cache", "wrong argument count or unexpected line ending after 'shared_cache', at Testfile:2"},
		{"two URLs", "shared_cache redis://a:6379 redis://b:6379", "wrong argument count or unexpected line ending after 'redis://a:6379', at Testfile:2"},
		{"bad scheme", "shared_cache https://:" + password + "@cache.internal", `shared_cache: the URL must start with redis://, rediss://, valkey:// or valkeys://, not "https:", at Testfile:2`},
		{"bad port", "shared_cache redis://:" + password + "@cache.internal:port", "shared_cache: invalid URL: invalid port \":port\" after host, at Testfile:2"},
		{"bad database", "shared_cache redis://:" + password + "@cache.internal:6379/x", "must be a database number, not \"/x\", at Testfile:2"},
		{"bad timeout", "shared_cache redis://cache.internal {\ntimeout soon\n}", `timeout: invalid duration "soon": time: invalid duration "soon", at Testfile:3`},
		{"timeout twice", "shared_cache redis://cache.internal {\ntimeout 1s\ntimeout 2s\n}", "timeout: given twice, at Testfile:4"},
		{"unknown subdirective", "shared_cache redis://cache.internal {\nttl 1m\n}", "unrecognized shared_cache subdirective 'ttl', at Testfile:3"},
		{"given twice", "shared_cache redis://a\nshared_cache redis://b", "shared_cache: given twice, at Testfile:3"},
		{"tls_ca without a file", "shared_cache rediss://cache.internal {\ntls_ca\n}", "wrong argument count or unexpected line ending after 'tls_ca', at Testfile:3"},
		{"tls_ca twice", "shared_cache rediss://cache.internal {\ntls_ca a.pem\ntls_ca b.pem\n}", "tls_ca: given twice, at Testfile:4"},
		{"tls_client without a key", "shared_cache rediss://cache.internal {\ntls_client cert.pem\n}", "wrong argument count or unexpected line ending after 'cert.pem', at Testfile:3"},
		{"tls_client with three files", "shared_cache rediss://cache.internal {\ntls_client a b c\n}", "wrong argument count or unexpected line ending after 'b', at Testfile:3"},
		{"cluster URL with an unknown parameter", "shared_cache redis://:" + password + "@h1:7000?addr=h2:7001&timeout=1s", `shared_cache: unknown query parameter "timeout": only addr and master_set are accepted, at Testfile:2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("custom_auth {\n" + tc.input + "\n}"))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// TestSharedCacheJSON: the JSON config is checked when it is provisioned, with the
// same errors, and a URL from an unset variable is refused.
func TestSharedCacheJSON(t *testing.T) {
	var h Handler
	if err := json.Unmarshal([]byte(`{"shared_cache": {"url": "redis://cache.internal:6379/2", "timeout": "75ms"}}`), &h); err != nil {
		t.Fatal(err)
	}
	if h.SharedCache == nil || h.SharedCache.URL != "redis://cache.internal:6379/2" || time.Duration(h.SharedCache.Timeout) != 75*time.Millisecond {
		t.Errorf("shared_cache = %+v", h.SharedCache)
	}
	t.Setenv("CA_TEST_EMPTY_REDIS_URL", "")
	for _, tc := range []struct{ config, wantErr string }{
		{`{"url": "{env.CA_TEST_EMPTY_REDIS_URL}"}`, `shared_cache: "{env.CA_TEST_EMPTY_REDIS_URL}" expands to an empty value`},
		{`{"timeout": "1s"}`, "shared_cache: the URL is required"},
		{`{"url": "memcached://cache:11211"}`, "shared_cache: the URL must start with redis://, rediss://, valkey:// or valkeys://"},
		{`{"url": "redis://cache:6379", "timeout": "-1s"}`, "shared_cache: timeout: must not be negative"},
		{`{"url": "rediss://cache:6379", "tls_ca": "/nonexistent/ca.pem"}`, "shared_cache: tls_ca: open /nonexistent/ca.pem"},
		{`{"url": "rediss://cache:6379", "tls_client_key": "/nonexistent/gw.key"}`, "shared_cache: tls_client: give a certificate and its key"},
	} {
		var cfg SharedCache
		if err := json.Unmarshal([]byte(tc.config), &cfg); err != nil {
			t.Fatal(err)
		}
		h := &Handler{CacheSize: gatewayCacheSize(), marks: newPurgeMarks(), SharedCache: &cfg, logger: zap.NewNop()}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		h.Cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want %q", tc.config, err, tc.wantErr)
		}
	}
}

// TestBinaryValidateSharedCache: `caddy validate` names the file and line of a bad
// shared_cache, and never prints its password.
func TestBinaryValidateSharedCache(t *testing.T) {
	const password = "hunter2-very-secret"
	file := writeCaddyfile(t, ":0 {\n\tcustom_auth {\n\t\tshared_cache redis://user:"+password+"@cache.internal:port\n\t}\n}\n")
	code, out := runCaddy(t, "validate", "--config", file, "--adapter", "caddyfile")
	if code == 0 || !strings.Contains(out, "shared_cache: invalid URL") || !strings.Contains(out, "Caddyfile:3") {
		t.Errorf("exit %d:\n%s", code, out)
	}
	if strings.Contains(out, password) {
		t.Errorf("the password is printed:\n%s", out)
	}
}

// TestSharedCacheConnectionOutlivesReloads: configs that name the same URL share one
// link, which lives until the last of them is cleaned up, as through a reload.
func TestSharedCacheConnectionOutlivesReloads(t *testing.T) {
	r := startRedis(t)
	api := newIdentityAPI(t)
	old := &Handler{CacheSize: gatewayCacheSize(), marks: newPurgeMarks(), SharedCache: &SharedCache{URL: r.url("/7")},
		Bots: map[string]*Bot{"shop": {AuthURL: api.URL}}, logger: zap.NewNop()}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := old.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	link := old.shared.link
	reloaded := fleetHandler(t, api, r.url("/7"), &Bot{})
	if reloaded.shared.link != link {
		t.Fatal("a config naming the same URL got a new connection")
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-link.done:
		t.Fatal("the connection closed while a config still uses it")
	default:
	}
	if got := verify(t, reloaded, "alice-token"); got != "verified/" {
		t.Errorf("outcome %s", got)
	}
}
