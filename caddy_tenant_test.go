package customauth

// Integration tests of what tenants (the authors of bots_url's answers) can reach,
// through a real Caddy. See caddy_test.go for the helpers and the fixed ports.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/golang-jwt/jwt/v5"
)

// TestIntegrationTenantCannotReachTheGateway: a remote bot whose auth_url is Caddy's
// admin endpoint (`POST /stop` would shut the gateway down) or a server on 127.0.0.1
// falls back with error, and neither is reached: the gateway and its admin endpoint
// keep working. With allow_private, the server on 127.0.0.1 is reached.
func TestIntegrationTenantCannotReachTheGateway(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	bots := newBotsAPI(t)
	bots.set("admin", `{"auth_url":"http://localhost:2999/stop","cache_ttl":0}`)
	bots.set("loopback", fmt.Sprintf(`{"auth_url":%q}`, api.URL+"/ca"))
	loads := 0
	config := func(botsURLOptions string) string {
		loads++
		return testGlobalOptions(loads, "") + fmt.Sprintf(`
		http://localhost:9080 {
			custom_auth {
				bots_url %s/bots {
					%s
				}
			}
			reverse_proxy %s {
				header_up X-Custom-Auth-Reason {http.custom_auth.reason}
			}
		}`, bots.URL, botsURLOptions, strings.TrimPrefix(be.URL, "http://"))
	}
	tester := caddytest.NewTester(t)
	tester.InitServer(config(""), "caddyfile")

	reason := func(bot string) string {
		t.Helper()
		req := gatewayRequest("/chat", "alice-token", "")
		req.Header.Set("X-Bot-Id", bot)
		tester.AssertResponse(req, http.StatusOK, "backend")
		got, _ := be.received(t)
		return got.Header.Get("X-Custom-Auth-Reason")
	}
	for range 3 {
		if r := reason("admin"); r != "error" {
			t.Errorf("auth_url on the admin endpoint: reason %q", r)
		}
	}
	resp, err := tester.Client.Get("http://localhost:2999/config/")
	if err != nil {
		t.Fatalf("the admin endpoint is gone: %v", err)
	}
	cfg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(cfg), "custom_auth") {
		t.Errorf("admin endpoint: %d %s", resp.StatusCode, cfg)
	}
	if r := reason("loopback"); r != "error" {
		t.Errorf("auth_url on 127.0.0.1: reason %q", r)
	}
	if n := api.calls.Load(); n != 0 {
		t.Fatalf("a tenant URL reached 127.0.0.1: %d calls", n)
	}

	tester.InitServer(config("allow_private"), "caddyfile")
	if r := reason("loopback"); r != "" {
		t.Errorf("auth_url on 127.0.0.1 with allow_private: reason %q", r)
	}
	if n := api.calls.Load(); n != 1 {
		t.Errorf("with allow_private: %d calls, want 1", n)
	}
}

// outcomeOf is the status/reason that the test configs below answer with (respond).
func outcomeOf(t *testing.T, client *http.Client, req *http.Request) string {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s: %v", req.URL.Path, err)
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestIntegrationJWKSKeysOfBoundedCost: a JWKS lists a real RSA-2048 key and a 16-kbit
// RSA modulus. 20 concurrent tokens naming the big one end with error, all within 2 s
// (verifying each would cost a CPU-second or more); a token of the real key verifies.
func TestIntegrationJWKSKeysOfBoundedCost(t *testing.T) {
	good := newRSAKey("good")
	huge := signingKey{kid: "huge", method: jwt.SigningMethodRS256, key: rsaTestKey(), jwk: rsaModulusJWK("huge", 16384)}
	jwks := newJWKSServer(t, good, huge)
	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, "")+fmt.Sprintf(`
	http://localhost:9080 {
		custom_auth {
			bot shop {
				verify_jwt {
					jwks_url %s/jwks
				}
				cache_ttl 0
				negative_ttl 0
			}
		}
		respond "{http.custom_auth.status}/{http.custom_auth.reason}"
	}`, jwks.URL), "caddyfile")

	const tokens = 20
	start := time.Now()
	var wg sync.WaitGroup
	for i := range tokens {
		token := huge.sign(t, claimsFor("shop", time.Now(), jwt.MapClaims{"sub": fmt.Sprint(i)}))
		wg.Go(func() {
			if o := outcomeOf(t, tester.Client, gatewayRequest("/", token, "")); o != "fallback/error" {
				t.Errorf("token %d naming the 16-kbit key: %s", i, o)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("%d tokens naming the 16-kbit key took %v", tokens, took)
	}
	if o := outcomeOf(t, tester.Client, gatewayRequest("/", good.sign(t, claimsFor("shop", time.Now(), nil)), "")); o != "verified/" {
		t.Errorf("a token of the real RSA-2048 key: %s", o)
	}
}

// neverAnswers is an API that accepts connections and requests and never answers; it
// counts the requests it holds, and the most it held at once.
type neverAnswers struct {
	*httptest.Server
	held, most atomic.Int64
}

func newNeverAnswers(t *testing.T) *neverAnswers {
	na := new(neverAnswers)
	na.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server sees the client leave
		n := na.held.Add(1)
		for most := na.most.Load(); n > most && !na.most.CompareAndSwap(most, n); most = na.most.Load() {
		}
		<-r.Context().Done()
		na.held.Add(-1)
	}))
	t.Cleanup(func() {
		na.CloseClientConnections()
		na.Close()
	})
	return na
}

// TestIntegrationManyRemoteBotsOnATarpit: 1,000 remote bots whose identity API
// accepts calls and never answers; 4,000 visitor requests, spread over them, each
// give up after 100 ms. With max_in_flight 100, the API never holds more than 100
// calls, the gateway's open files and goroutines stay within what 100 calls hold, and
// a listed bot's visitors stay verified in under a second meanwhile.
func TestIntegrationManyRemoteBotsOnATarpit(t *testing.T) {
	const bots, requests, bound = 1000, 4000, 100
	tarpit := newNeverAnswers(t)
	api := newIdentityAPI(t)
	botsAPI := newBotsAPI(t)
	botsAPI.anyBot = fmt.Sprintf(`{"auth_url":%q,"timeout":"1m","cache_ttl":0,"negative_ttl":0}`, tarpit.URL)
	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, "")+fmt.Sprintf(`
	http://localhost:9080 {
		custom_auth {
			bots_url %s/bots {
				allow_private
				max_timeout 1m
				max_in_flight %d
			}
			bot listed {
				auth_url %s/ca
				cache_ttl 0
			}
		}
		respond "{http.custom_auth.status}/{http.custom_auth.reason}"
	}`, botsAPI.URL, bound, api.URL), "caddyfile")
	visitor := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 100 * time.Millisecond}
	listed := func() (string, time.Duration) {
		req := gatewayRequest("/", "alice-token", "")
		req.Header.Set("X-Bot-Id", "listed")
		start := time.Now()
		o := outcomeOf(t, tester.Client, req)
		return o, time.Since(start)
	}
	if o, _ := listed(); o != "verified/" {
		t.Fatalf("listed bot before the flood: %s", o)
	}
	runtime.GC()
	fdsBefore, goroutinesBefore := openFDs(t), runtime.NumGoroutine()

	flood := make(chan int)
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			for i := range flood {
				req := gatewayRequest("/", fmt.Sprintf("token-%d", i), "")
				req.Header.Set("X-Bot-Id", fmt.Sprintf("tenant-bot-%d", i%bots))
				if resp, err := visitor.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	var slowest time.Duration
	for i := range requests {
		flood <- i
		if i%500 == 0 {
			o, took := listed()
			if o != "verified/" {
				t.Errorf("listed bot during the flood: %s", o)
			}
			slowest = max(slowest, took)
		}
	}
	close(flood)
	wg.Wait()

	// Each call held costs two open files here (the gateway's connection and the
	// tarpit's end of it) and a handful of goroutines (the call, the connection's
	// reader and writer, the tarpit's handler and its reader). The settings fetches
	// of the 1,000 bots leave idle connections to bots_url, at most max_in_flight:
	// two files and three goroutines each.
	const margin = 100
	maxFDs := fdsBefore + 2*bound + 2*bound + margin
	maxGoroutines := goroutinesBefore + 6*bound + 3*bound + margin
	var fds, goroutines int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		fds, goroutines = openFDs(t), runtime.NumGoroutine()
		if fds <= maxFDs && goroutines <= maxGoroutines {
			break
		}
	}
	t.Logf("%d requests to %d bots on a tarpit: %d calls held (most %d, bound %d), open files %d -> %d (bound %d), goroutines %d -> %d (bound %d), listed bot's slowest %v",
		requests, bots, tarpit.held.Load(), tarpit.most.Load(), bound, fdsBefore, fds, maxFDs, goroutinesBefore, goroutines, maxGoroutines, slowest)
	if most := tarpit.most.Load(); most > bound {
		t.Errorf("the tarpit held %d calls at once, over max_in_flight %d", most, bound)
	}
	if fds > maxFDs || goroutines > maxGoroutines {
		t.Errorf("the gateway holds more than the bound")
	}
	if slowest >= time.Second {
		t.Errorf("the listed bot took %v during the flood", slowest)
	}
	if o, took := listed(); o != "verified/" || took >= time.Second {
		t.Errorf("listed bot after the flood: %s in %v", o, took)
	}
}
