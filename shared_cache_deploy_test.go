package customauth

// Tests of the shared cache on the deployments that fleets run: a Redis Cluster of
// three shards, a master with a replica and a Sentinel, and TLS with a private CA.
// Every server is a real redis-server.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// redisCLI runs redis-cli and returns its output.
func redisCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// eventuallyWithin polls cond every 50ms until it holds, failing the test after within.
func eventuallyWithin(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startRedisCluster makes a cluster of three masters with `redis-cli --cluster
// create` and waits until every node says it is ok.
func startRedisCluster(t testing.TB) []*redisServer {
	t.Helper()
	requireTool(t, "redis-cli", "redis-tools")
	dir := t.TempDir()
	var nodes []*redisServer
	var addrs []string
	for i := range 3 {
		r := startRedis(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", i)))
		nodes = append(nodes, r)
		addrs = append(addrs, r.addr())
	}
	redisCLI(t, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...)
	for _, r := range nodes {
		eventuallyWithin(t, 20*time.Second, "cluster_state:ok on "+r.addr(), func() bool {
			return strings.Contains(redisCLI(t, "-p", strconv.Itoa(r.port), "cluster", "info"), "cluster_state:ok")
		})
	}
	return nodes
}

// clusterURL names a cluster by all its nodes, the first one from; path may name
// database 0, which gives another link to the same cluster.
func clusterURL(nodes []*redisServer, from int, path string) string {
	u := "redis://" + nodes[from%len(nodes)].addr() + path
	for i := 1; i < len(nodes); i++ {
		sep := "&"
		if i == 1 {
			sep = "?"
		}
		u += sep + "addr=" + nodes[(from+i)%len(nodes)].addr()
	}
	return u
}

// TestSharedCacheCluster: on a cluster of three shards, verdicts spread over every
// shard and are shared, and purges by token, contact and bot reach the other gateway.
func TestSharedCacheCluster(t *testing.T) {
	nodes := startRedisCluster(t)
	api := newIdentityAPI(t)
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		if !strings.HasPrefix(body["access_token"], "visitor-") {
			return false
		}
		fmt.Fprintf(w, `{"data":{"id":%q}}`, strings.TrimPrefix(body["access_token"], "visitor-"))
		return true
	})
	t.Run("shares verdicts", func(t *testing.T) {
		first := fleetHandler(t, api, clusterURL(nodes, 0, ""), &Bot{})
		second := fleetHandler(t, api, clusterURL(nodes, 1, ""), &Bot{})
		<-first.shared.link.ready
		if !first.shared.link.server.sharded {
			t.Fatal("the cluster was not detected")
		}
		const visitors = 30
		for _, h := range []*Handler{first, second} {
			for i := range visitors {
				if got := verify(t, h, fmt.Sprintf("visitor-%d", i)); got != "verified/" {
					t.Fatalf("visitor %d: %s", i, got)
				}
			}
		}
		if n := api.calls.Load(); n != visitors {
			t.Errorf("%d API calls for %d visitors on two gateways, want %d", n, visitors, visitors)
		}
		for _, r := range nodes {
			if keys := redisCLI(t, "-p", strconv.Itoa(r.port), "dbsize"); strings.TrimSpace(keys) == "0" {
				t.Errorf("shard %s holds no verdict: keys do not spread over the slots", r.addr())
			}
		}
	})
	purgeAcrossGateways(t, func(int) (string, string) { return clusterURL(nodes, 2, ""), clusterURL(nodes, 2, "/0") })
}

// testPKI is a private CA, with a server certificate for 127.0.0.1 and a client
// certificate it signed, as PEM files.
type testPKI struct {
	dir                            string
	ca, serverCert, serverKey      string
	clientCert, clientKey, otherCA string
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	caKey, caCert := p.issue(t, "ca", nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage = x509.KeyUsageCertSign
	})
	p.ca = filepath.Join(p.dir, "ca.crt")
	p.serverCert, p.serverKey = filepath.Join(p.dir, "server.crt"), filepath.Join(p.dir, "server.key")
	p.issue(t, "server", caCert, caKey, func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	p.clientCert, p.clientKey = filepath.Join(p.dir, "client.crt"), filepath.Join(p.dir, "client.key")
	p.issue(t, "client", caCert, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	p.otherCA = filepath.Join(p.dir, "other.crt")
	p.issue(t, "other", nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage = x509.KeyUsageCertSign
	})
	return p
}

// issue makes a key and a certificate named name in p.dir, signed by parent (self-
// signed without one).
func (p *testPKI) issue(t testing.TB, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, shape func(*x509.Certificate)) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "custom_auth test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	shape(tmpl)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(p.dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(p.dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// startTLSRedis runs redis-server with TLS only, asking clients for a certificate of
// the test's CA, and a password.
func startTLSRedis(t testing.TB, p *testPKI, password string) *redisServer {
	t.Helper()
	return runRedis(t, &redisServer{tls: true, args: []string{
		"--tls-cert-file", p.serverCert, "--tls-key-file", p.serverKey, "--tls-ca-cert-file", p.ca,
		"--tls-auth-clients", "yes", "--requirepass", password,
	}})
}

// TestSharedCacheTLS: rediss:// with a private CA and a client certificate shares
// verdicts and purges; a wrong CA, a missing client certificate or bad files fail
// with errors that name the option and never show the password.
func TestSharedCacheTLS(t *testing.T) {
	const password = "tls-secret-password"
	p := newTestPKI(t)
	r := startTLSRedis(t, p, password)
	url := "rediss://default:" + password + "@" + r.addr()
	api := sameContactAPI(t)
	tlsHandler := func(cfg SharedCache, logger *zap.Logger) *Handler {
		cfg.URL, cfg.Timeout = url, caddy.Duration(2*time.Second)
		return provision(t, &Handler{CacheSize: gatewayCacheSize(), marks: newPurgeMarks(), logger: logger,
			SharedCache: &cfg, Bots: map[string]*Bot{"shop": {AuthURL: api.URL}}})
	}
	mutual := SharedCache{TLSCA: p.ca, TLSClientCert: p.clientCert, TLSClientKey: p.clientKey}
	first := tlsHandler(mutual, nil)
	mutual.TLSCA = filepath.Join(p.dir, "ca-copy.crt") // another link to the same server
	if pem, err := os.ReadFile(p.ca); err != nil || os.WriteFile(mutual.TLSCA, pem, 0o600) != nil {
		t.Fatal(err)
	}
	second := tlsHandler(mutual, nil)
	verify(t, first, "alice-token")
	verify(t, second, "alice-token")
	if n := api.calls.Load(); n != 1 {
		t.Errorf("%d API calls for one visitor on two gateways over TLS, want 1", n)
	}
	if result := purgeNow(t, []*Handler{first}, purgeRequest{Bot: "shop", Token: ptr("alice-token")}); *result.Gateways != 2 {
		t.Errorf("the purge reached %d gateways, want 2", *result.Gateways)
	}
	verify(t, second, "alice-token")
	if n := api.calls.Load(); n != 2 {
		t.Errorf("%d API calls after a purge over TLS, want 2", n)
	}

	// A server the CA does not vouch for, and no client certificate: never synced,
	// the handshake failure is logged, and not the password.
	for name, cfg := range map[string]SharedCache{
		"other CA":   {TLSCA: p.otherCA, TLSClientCert: p.clientCert, TLSClientKey: p.clientKey},
		"no cert":    {TLSCA: p.ca},
		"system CAs": {},
	} {
		t.Run(name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			h := tlsHandler(cfg, zap.New(core))
			verify(t, h, "alice-token")
			eventuallyWithin(t, 10*time.Second, "a failed handshake logged", func() bool {
				if logs.FilterMessageSnippet("the TLS handshake failed: check tls_ca").Len() > 0 {
					return true
				}
				for _, e := range logs.TakeAll() {
					t.Logf("logged: %s %v", e.Message, e.ContextMap())
				}
				return false
			})
			if h.shared.link.synced.Load() {
				t.Error("the link synced with a server it must refuse")
			}
			h.Cleanup()
			for _, e := range logs.All() {
				line := fmt.Sprint(e.Message, e.ContextMap())
				if strings.Contains(line, password) {
					t.Errorf("the password is logged: %s", line)
				}
			}
		})
	}

	for _, tc := range []struct {
		cfg     SharedCache
		wantErr string
	}{
		{SharedCache{URL: url, TLSCA: filepath.Join(p.dir, "missing.crt")}, "shared_cache: tls_ca: open "},
		{SharedCache{URL: url, TLSCA: p.serverKey}, "shared_cache: tls_ca: " + p.serverKey + " holds no PEM certificate"},
		{SharedCache{URL: url, TLSClientCert: p.clientCert}, "shared_cache: tls_client: give a certificate and its key"},
		{SharedCache{URL: url, TLSClientCert: p.clientCert, TLSClientKey: p.serverKey}, "shared_cache: tls_client: tls: private key does not match public key"},
		{SharedCache{URL: "redis://:" + password + "@" + r.addr(), TLSCA: p.ca}, "shared_cache: tls_ca and tls_client need a rediss:// or valkeys:// URL"},
	} {
		_, err := loadSharedCache(&tc.cfg, caddy.NewReplacer(), newPurgeMarks(), &environment{logger: zap.NewNop(), metrics: newProcessMetrics(), now: time.Now})
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.wantErr)
		} else if strings.Contains(err.Error(), password) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// startSentinel runs a master, a replica and a Sentinel that watches them under the
// name "fleet", and waits until the Sentinel knows the replica.
func startSentinel(t testing.TB) (master, replica, sentinel *redisServer) {
	t.Helper()
	requireTool(t, "redis-cli", "redis-tools")
	master = startRedis(t)
	replica = startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor fleet 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds fleet 2000\nsentinel failover-timeout fleet 10000\n", master.port)), 0o600)
	sentinel = runRedis(t, &redisServer{conf: conf, ready: "+monitor master fleet", args: []string{"--sentinel"}})
	eventuallyWithin(t, 30*time.Second, "the Sentinel sees the replica in sync", func() bool {
		return strings.Contains(redisCLI(t, "-p", strconv.Itoa(replica.port), "info", "replication"), "master_link_status:up") &&
			strings.Contains(redisCLI(t, "-p", strconv.Itoa(sentinel.port), "sentinel", "replicas", "fleet"), strconv.Itoa(replica.port))
	})
	return master, replica, sentinel
}

// maxFailoverRequests bounds each request stream of the failover test.
const maxFailoverRequests = 1_000_000

// TestSharedCacheSentinelFailover: two gateways find the master through a Sentinel; a
// forced failover under a stream of requests fails none of them, and afterwards the
// gateways share verdicts and purges through the new master.
func TestSharedCacheSentinelFailover(t *testing.T) {
	_, replica, sentinel := startSentinel(t)
	api := newIdentityAPI(t)
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		if !strings.HasPrefix(body["access_token"], "alice") {
			return false
		}
		w.Write([]byte(`{"data":` + aliceData + `}`))
		return true
	})
	url := "redis://" + sentinel.addr() + "?master_set=fleet"
	first := fleetHandler(t, api, url, &Bot{})
	second := fleetHandler(t, api, url+"&addr="+sentinel.addr(), &Bot{})
	for _, token := range []string{"alice-token", "alice-during-token"} {
		verify(t, first, token)
		verify(t, second, token)
	}
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("%d API calls before the failover, want 2", n)
	}

	var sent, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopStreams := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopStreams() // also when the test fails half-way: no request outlives it
	for _, h := range []*Handler{first, second} {
		wg.Go(func() {
			for i := range maxFailoverRequests {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				got := verify(t, h, fmt.Sprintf("alice-%d-token", i%50))
				if sent.Add(1); got != "verified/" || time.Since(start) > 3*time.Second {
					failed.Add(1)
					t.Errorf("during the failover: %s after %v", got, time.Since(start))
				}
			}
		})
	}
	// A Sentinel refuses a failover (NOGOODSLAVE) until it has read the replica's own
	// INFO, which it does every few seconds: ask until it starts one.
	eventuallyWithin(t, 30*time.Second, "the Sentinel starts a failover", func() bool {
		return strings.HasPrefix(redisCLI(t, "-p", strconv.Itoa(sentinel.port), "sentinel", "failover", "fleet"), "OK")
	})
	// A purge during the failover: answered at once or with 503, it reaches the
	// other gateway either way.
	ctx, cancel := context.WithTimeout(t.Context(), purgeTimeout)
	purgeHandlers(ctx, []*Handler{first}, purgeRequest{Bot: "shop", Token: ptr("alice-during-token")})
	cancel()
	eventuallyWithin(t, 30*time.Second, "the replica is the master", func() bool {
		return strings.Contains(redisCLI(t, "-p", strconv.Itoa(replica.port), "role"), "master")
	})
	eventuallyWithin(t, 30*time.Second, "both gateways synced with the new master", func() bool {
		return sent.Load() > 100 && first.shared.link.synced.Load() && second.shared.link.synced.Load() &&
			len(replica.clients(t, "pubsub")) >= 2
	})
	stopStreams()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed during the failover", failed.Load(), sent.Load())
	}

	verify(t, second, "alice-during-token")
	if n := api.callsFor("alice-during-token"); n != 2 {
		t.Errorf("%d API calls for the token purged during the failover, want 2: the purge did not reach the other gateway", n)
	}

	// The fleet shares and purges through the new master.
	before := api.calls.Load()
	verify(t, first, "alice-after-token")
	verify(t, second, "alice-after-token")
	if n := api.calls.Load() - before; n != 1 {
		t.Errorf("%d API calls for a visitor on two gateways after the failover, want 1", n)
	}
	if result := purgeNow(t, []*Handler{second}, purgeRequest{Bot: "shop", Contact: ptr("2")}); *result.Gateways != 2 {
		t.Errorf("a purge after the failover reached %d gateways, want 2", *result.Gateways)
	}
	verify(t, first, "alice-token")
	if n := api.calls.Load() - before; n != 2 {
		t.Errorf("%d API calls after a purge, want 2: the purge did not reach the other gateway", n)
	}
}

// clients lists the server's clients of a type (normal, pubsub, …).
func (r *redisServer) clients(t testing.TB, kind string) []string {
	t.Helper()
	var lines []string
	for _, line := range strings.Split(redisCLI(t, "-p", strconv.Itoa(r.port), "client", "list", "type", kind), "\n") {
		if strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// redisDB is a plain client of one database of the test's server.
func redisDB(t testing.TB, r *redisServer, db int) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.addr()}, SelectDB: db, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestSharedCacheValueBoundToItsKey: a verdict copied over another visitor's key in
// the server is not served for that visitor, and a changed value is a miss.
func TestSharedCacheValueBoundToItsKey(t *testing.T) {
	r := startRedis(t)
	api := newIdentityAPI(t)
	first := fleetHandler(t, api, r.url("/5"), &Bot{})
	second := fleetHandler(t, api, r.url("/05"), &Bot{})
	contactOf := func(h *Handler, token string) string {
		t.Helper()
		got := serve(t, h, widgetRequest("shop", token, ""))
		if got.code >= 500 {
			t.Fatalf("%s: HTTP %d", token, got.code)
		}
		return got.placeholder("http.custom_auth.contact.id")
	}
	if contactOf(first, "alice-token") != "2" || contactOf(first, "number-token") != "42" {
		t.Fatal("the API's contacts are not those the test expects")
	}
	c := redisDB(t, r, 5)
	keyOf := func(token string) string {
		return sharedVerdictKey(identityKey(first.bots["shop"], identityRequest{token: token}))
	}
	alice, err := c.Do(t.Context(), c.B().Get().Key(keyOf("alice-token")).Build()).AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(t.Context(), c.B().Set().Key(keyOf("number-token")).Value(string(alice)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got := contactOf(second, "number-token"); got != "42" {
		t.Errorf("the other gateway served contact %q for number-token, want 42: a value copied from alice's key was served", got)
	}
	if n := api.calls.Load(); n != 3 {
		t.Errorf("%d API calls, want 3: the copied value was not a miss", n)
	}

	// Every change of one byte of a value is a miss.
	key := identityKey(first.bots["shop"], identityRequest{token: "alice-token"})
	for i := range alice {
		changed := bytes.Clone(alice)
		changed[i] ^= 0x5a
		c.Do(t.Context(), c.B().Set().Key(keyOf("alice-token")).Value(string(changed)).Build())
		if _, read := second.shared.get(t.Context(), key); read != sharedMiss {
			t.Fatalf("byte %d changed: read %d, want a miss", i, read)
		}
	}
	if got := contactOf(second, "alice-token"); got != "2" {
		t.Errorf("after a changed value: contact %q, want 2 from the API", got)
	}
}

// meteredGateway is a gateway of the fleet with metrics of its own, to read them.
func meteredGateway(t *testing.T, api *identityAPI, url string, timeout time.Duration) (*Handler, *metrics) {
	m := newProcessMetrics()
	return provision(t, &Handler{CacheSize: gatewayCacheSize(), marks: newPurgeMarks(), metrics: m,
		SharedCache: &SharedCache{URL: url, Timeout: caddy.Duration(timeout)},
		Bots:        map[string]*Bot{"shop": {AuthURL: api.URL}}}), m
}

// TestSharedCacheNotReadWhileItsPurgeChannelIsDown: a gateway whose subscription to
// the purge channel is down, while the server still answers, reads no verdict from
// the shared cache (it could have missed a purge), and reads them again once it is
// back; shared_cache_up and shared_cache_requests_total show it.
func TestSharedCacheNotReadWhileItsPurgeChannelIsDown(t *testing.T) {
	r := startRedis(t)
	api := sameContactAPI(t)
	first := fleetHandler(t, api, r.url("/6"), &Bot{})
	second, m := meteredGateway(t, api, r.url("/06"), 2*time.Second)
	link := second.shared.link
	eventuallyWithin(t, 5*time.Second, "the link synced", link.synced.Load)
	if up := testutil.ToFloat64(m.sharedUp); up != 1 {
		t.Errorf("shared_cache_up = %v while synced, want 1", up)
	}
	verify(t, first, "alice-token")

	c := redisClient(t, r)
	do := func(args ...string) {
		t.Helper()
		if err := c.Do(t.Context(), c.B().Arbitrary(args...).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	do("ACL", "SETUSER", "default", "-subscribe", "-ssubscribe")
	t.Cleanup(func() {
		c.Do(context.Background(), c.B().Arbitrary("ACL", "SETUSER", "default", "+subscribe", "+ssubscribe").Build())
	})
	do("CLIENT", "KILL", "TYPE", "pubsub")
	eventuallyWithin(t, 5*time.Second, "the link sees its purge channel down", func() bool { return !link.synced.Load() })
	if up := testutil.ToFloat64(m.sharedUp); up != 0 {
		t.Errorf("shared_cache_up = %v with the purge channel down, want 0", up)
	}
	verify(t, second, "alice-token")
	if n := api.calls.Load(); n != 2 {
		t.Errorf("%d API calls, want 2: a verdict was read from the shared cache while the purge channel was down", n)
	}
	if n := testutil.ToFloat64(m.sharedReads[sharedSkipped]); n != 1 {
		t.Errorf("shared_cache_requests_total{result=skipped} = %v, want 1", n)
	}

	do("ACL", "SETUSER", "default", "+subscribe", "+ssubscribe")
	eventuallyWithin(t, 10*time.Second, "the link synced again", link.synced.Load)
	if up := testutil.ToFloat64(m.sharedUp); up != 1 {
		t.Errorf("shared_cache_up = %v once back, want 1", up)
	}
	verify(t, first, "alice-phone-token")
	verify(t, second, "alice-phone-token")
	if n := api.calls.Load(); n != 3 {
		t.Errorf("%d API calls, want 3: the shared cache is not read again once the channel is back", n)
	}
	if n := testutil.ToFloat64(m.sharedReads[sharedHit]); n != 1 {
		t.Errorf("shared_cache_requests_total{result=hit} = %v, want 1", n)
	}
}

// TestSharedCacheMetrics: the shared cache's metrics move as its server goes down and
// comes back, and a verdict the shared cache gave is counted as a shared hit, not as
// an identity-cache miss.
func TestSharedCacheMetrics(t *testing.T) {
	r := startRedis(t)
	api := sameContactAPI(t)
	first := fleetHandler(t, api, r.url("/8"), &Bot{})
	second, m := meteredGateway(t, api, r.url("/08"), 200*time.Millisecond)
	eventuallyWithin(t, 5*time.Second, "shared_cache_up is 1", func() bool { return testutil.ToFloat64(m.sharedUp) == 1 })
	verify(t, first, "alice-token")
	verify(t, second, "alice-token")
	if got := testutil.ToFloat64(m.sharedHits); got != 1 {
		t.Errorf(`cache_requests_total{cache="shared",result="hit"} = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(m.identityMisses); got != 0 {
		t.Errorf(`cache_requests_total{cache="identity",result="miss"} = %v, want 0: a shared hit is counted as a miss`, got)
	}
	if got := testutil.ToFloat64(m.sharedReads[sharedHit]); got != 1 {
		t.Errorf(`shared_cache_requests_total{result="hit"} = %v, want 1`, got)
	}
	verify(t, second, "alice-new-token")
	if got := testutil.ToFloat64(m.sharedReads[sharedMiss]); got != 1 {
		t.Errorf(`shared_cache_requests_total{result="miss"} = %v, want 1`, got)
	}
	purgeNow(t, []*Handler{second}, purgeRequest{Bot: "shop", Token: ptr("alice-token")})
	if got := testutil.ToFloat64(m.purges.WithLabelValues("ok")); got != 1 {
		t.Errorf(`purges_total{result="ok"} = %v, want 1`, got)
	}

	r.stop()
	eventuallyWithin(t, 5*time.Second, "shared_cache_up is 0", func() bool { return testutil.ToFloat64(m.sharedUp) == 0 })
	for i := range sharedBreakerFailures + 2 {
		verify(t, second, fmt.Sprintf("alice-down-%d-token", i))
	}
	if got := testutil.ToFloat64(m.sharedReads[sharedSkipped]) + testutil.ToFloat64(m.sharedReads[sharedError]); got != sharedBreakerFailures+2 {
		t.Errorf(`shared_cache_requests_total{result=~"skipped|error"} = %v with the server down, want %d`, got, sharedBreakerFailures+2)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := purgeHandlers(ctx, []*Handler{second}, purgeRequest{Bot: "shop"}); err == nil {
		t.Error("a purge with the server down told the fleet")
	}
	if got := testutil.ToFloat64(m.purges.WithLabelValues("partial")); got != 1 {
		t.Errorf(`purges_total{result="partial"} = %v, want 1`, got)
	}

	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	// The breaker lets a probe through after sharedBreakerOpenFor: requests go on.
	probes := 0
	eventuallyWithin(t, 15*time.Second, "shared_cache_up is 1 again", func() bool {
		probes++
		verify(t, second, fmt.Sprintf("alice-back-%d-token", probes))
		return testutil.ToFloat64(m.sharedUp) == 1
	})
}

// TestSharedCacheMalformedValueIsAMiss: values that pass the key check but are not
// sound verdicts (as a writer who knows the scheme could store) are misses, never an
// error answer, also with an assertion to sign.
func TestSharedCacheMalformedValueIsAMiss(t *testing.T) {
	r := startRedis(t)
	api := newIdentityAPI(t)
	first := fleetHandler(t, api, r.url("/9"), &Bot{})
	serve(t, first, widgetRequest("shop", "alice-token", ""))
	c := redisDB(t, r, 9)
	keyOf := func(token string) string { return identityKey(first.bots["shop"], identityRequest{token: token}) }
	raw, err := c.Do(t.Context(), c.B().Get().Key(sharedVerdictKey(keyOf("alice-token"))).Build()).AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	alice := storedVerdict(raw[sealLen:])
	second := provision(t, &Handler{CacheSize: gatewayCacheSize(), marks: newPurgeMarks(), SignKey: strings.Repeat("k", 32),
		SharedCache: &SharedCache{URL: r.url("/09"), Timeout: caddy.Duration(2 * time.Second)},
		Bots:        map[string]*Bot{"shop": {AuthURL: api.URL}}})
	rng := mathrand.New(mathrand.NewPCG(21, 5))
	for i := range 300 {
		changed := bytes.Clone(alice)
		for range 1 + rng.IntN(3) {
			changed[rng.IntN(len(changed))] ^= byte(1 + rng.IntN(255))
		}
		token := fmt.Sprintf("visitor-%d-token", i)
		c.Do(t.Context(), c.B().Set().Key(sharedVerdictKey(keyOf(token))).Value(string(sealVerdict(keyOf(token), changed))).Build())
		if got := serve(t, second, widgetRequest("shop", token, "")); got.code >= 500 || got.err != nil {
			t.Fatalf("change %d (%x): HTTP %d, %v", i, changed[:verdictHeaderLen], got.code, got.err)
		}
	}
}

// BenchmarkServeHTTPSharedCacheDown: what a shared cache whose servers are all gone
// (a dead cluster: every seed refuses connections) costs a request, next to no shared
// cache at all: a local hit, and a local miss (a new visitor whose verdict the API
// gives at once), once the breaker has opened.
func BenchmarkServeHTTPSharedCacheDown(b *testing.B) {
	for _, shared := range []string{"none", "dead cluster"} {
		for _, path := range []string{"local hit", "local miss"} {
			b.Run(shared+"/"+path, func(b *testing.B) {
				api := newIdentityAPI(b)
				h := &Handler{CacheSize: gatewayCacheSize(), marks: newPurgeMarks(), Bots: map[string]*Bot{"shop": {AuthURL: api.URL}}}
				if shared != "none" {
					h.SharedCache = &SharedCache{URL: "redis://127.0.0.1:1?addr=127.0.0.1:2&addr=127.0.0.1:3"}
				}
				provision(b, h)
				for i := range sharedBreakerFailures + 1 { // the breaker opens
					serve(b, h, widgetRequest("shop", fmt.Sprintf("warm-%d-token", i), ""))
				}
				serve(b, h, widgetRequest("shop", "alice-token", ""))
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					token := "alice-token"
					if path == "local miss" {
						i++
						token = "visitor-" + strconv.Itoa(i)
					}
					if got := serve(b, h, widgetRequest("shop", token, "")); got.code >= 500 {
						b.Fatal(got.err)
					}
				}
			})
		}
	}
}
