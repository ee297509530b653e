package customauth

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestSpecialAddress(t *testing.T) {
	for _, tc := range []struct {
		addr, kind string
	}{
		// IPv4
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "this-network"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"100.64.0.1", "shared (carrier-grade NAT)"},
		{"100.127.255.255", "shared (carrier-grade NAT)"},
		{"169.254.169.254", "link-local"},
		{"192.0.0.170", "IETF protocol assignment"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"192.0.2.2", "documentation"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.200", "documentation"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "reserved"},
		// IPv6
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"fc00::1", "private"},
		{"fd12:3456:789a::1", "private"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fec0::1", "site-local"},
		{"ff02::1", "multicast"},
		{"ff05::2", "multicast"},
		{"::7f00:1", "IPv4-compatible"},
		{"100::1", "discard-only"},
		{"64:ff9b:1::a00:1", "local-use NAT64"},
		{"2001:db8::1", "documentation"},
		// IPv4 inside IPv6: judged by the IPv4 address the packets reach.
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:10.1.2.3", "private"},
		{"::ffff:169.254.169.254", "link-local"},
		{"::ffff:0.0.0.0", "unspecified"},
		{"::ffff:100.64.0.1", "shared (carrier-grade NAT)"},
		{"::ffff:255.255.255.255", "reserved"},
		{"::ffff:224.0.0.1", "multicast"},
		{"64:ff9b::7f00:1", "loopback"},
		{"64:ff9b::a9fe:a9fe", "link-local"},
		{"64:ff9b::c0a8:101", "private"},
		{"2002:7f00:1::1", "loopback"},
		{"2002:a00:1::1", "private"},
		// Public addresses pass.
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"93.184.215.14", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"169.255.0.1", ""},
		{"2606:4700:4700::1111", ""},
		{"2001:4860:4860::8888", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""},
		{"2002:808:808::1", ""},
	} {
		a := netip.MustParseAddr(tc.addr)
		if kind := specialAddress(a); kind != tc.kind {
			t.Errorf("%s: %q, want %q", tc.addr, kind, tc.kind)
		}
		// The dialer's check sees host:port after name resolution.
		err := refuseSpecialAddress(context.Background(), "tcp", netip.AddrPortFrom(a, 443).String(), nil)
		if (err == nil) != (tc.kind == "") {
			t.Errorf("dialling %s: %v", tc.addr, err)
		}
	}
}

// TestOwnAddressesAreRefused: whatever the gateway's interfaces' addresses are,
// public ones included, a tenant URL cannot connect to them.
func TestOwnAddressesAreRefused(t *testing.T) {
	ifaceAddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, ifaceAddr := range ifaceAddrs {
		ipNet, ok := ifaceAddr.(*net.IPNet)
		if !ok {
			continue
		}
		a, _ := netip.AddrFromSlice(ipNet.IP)
		a = a.Unmap()
		if own, err := ownAddress(a); !own || err != nil {
			t.Errorf("%s: own address = %v, %v", a, own, err)
		}
		if err := refuseSpecialAddress(context.Background(), "tcp", netip.AddrPortFrom(a, 80).String(), nil); err == nil {
			t.Errorf("%s: not refused", a)
		}
	}
	if own, err := ownAddress(netip.MustParseAddr("8.8.8.8")); own || err != nil {
		t.Errorf("8.8.8.8: own address = %v, %v", own, err)
	}
}

// tenantHandler serves remote bots from bots; the listed bot "operator" uses api.
func tenantHandler(t *testing.T, bots *botsAPI, api *identityAPI, src BotsSource) *Handler {
	src.URL = bots.URL + "/bots/"
	return provision(t, &Handler{
		CacheSize: defaultCacheSize,
		BotsURL:   &src,
		Bots:      map[string]*Bot{"operator": {AuthURL: api.URL + "/operator", CacheTTL: dur(0)}},
	})
}

// TestTenantURLsCannotReachPrivateAddresses: a remote bot's auth_url and whitelist_url
// on 127.0.0.1 (by address or by a name that resolves to it) are refused when dialled;
// the visitor falls back with error, and the servers see no request. A listed bot is
// not restricted, and allow_private lets remote bots through.
func TestTenantURLsCannotReachPrivateAddresses(t *testing.T) {
	api := newIdentityAPI(t)
	wl := newWhitelistAPI(t, `["shop.example.com"]`)
	bots := newBotsAPI(t)
	port := api.URL[strings.LastIndex(api.URL, ":")+1:]
	bots.set("by-address", fmt.Sprintf(`{"auth_url":%q}`, api.URL+"/ca"))
	bots.set("by-name", fmt.Sprintf(`{"auth_url":"http://localhost:%s/ca"}`, port))
	bots.set("mapped", fmt.Sprintf(`{"auth_url":"http://[::ffff:127.0.0.1]:%s/ca"}`, port))
	bots.set("whitelist", fmt.Sprintf(`{"auth_url":%q,"whitelist_url":{"url":%q}}`, api.URL+"/ca", wl.URL+"/domains"))

	h := tenantHandler(t, bots, api, BotsSource{})
	for _, bot := range []string{"by-address", "by-name", "mapped"} {
		out := h.identify(context.Background(), visit{botID: bot, token: "alice-token"})
		if out.reason != reasonError {
			t.Errorf("%s: reason %q, want error", bot, out.reason)
		} else if !strings.Contains(fmt.Sprint(out.err), "loopback address") {
			t.Errorf("%s: error %v does not say why", bot, out.err)
		}
	}
	if o := botOutcome(t, h, "whitelist", "alice-token"); o != "fallback/domain_not_allowed" {
		t.Errorf("whitelist_url on 127.0.0.1: %s", o)
	}
	if n, w := api.calls.Load(), wl.calls.Load(); n != 0 || w != 0 {
		t.Fatalf("tenant URLs reached 127.0.0.1: %d identity calls, %d whitelist fetches", n, w)
	}
	if o := botOutcome(t, h, "operator", "alice-token"); o != "verified/" {
		t.Errorf("listed bot: %s", o)
	}

	open := tenantHandler(t, bots, api, BotsSource{AllowPrivate: true})
	for _, bot := range []string{"by-address", "by-name", "mapped"} {
		if o := botOutcome(t, open, bot, "alice-token"); o != "verified/" {
			t.Errorf("%s with allow_private: %s", bot, o)
		}
	}
	if o := botOutcome(t, open, "whitelist", "alice-token"); o != "verified/" {
		t.Errorf("whitelist_url with allow_private: %s", o)
	}
	if w := wl.calls.Load(); w != 1 {
		t.Errorf("whitelist fetches with allow_private = %d, want 1", w)
	}
}

// TestRemoteBotTimeoutIsCapped: a tenant's timeout of 10m is cut to max_timeout.
func TestRemoteBotTimeoutIsCapped(t *testing.T) {
	api := newIdentityAPI(t) // hang-token hangs until the test ends
	bots := newBotsAPI(t)
	bots.set("slow", fmt.Sprintf(`{"auth_url":%q,"timeout":"10m","cache_ttl":0}`, api.URL))
	h := tenantHandler(t, bots, api, BotsSource{AllowPrivate: true, MaxTimeout: caddy.Duration(100 * time.Millisecond)})

	done := make(chan string, 1)
	start := time.Now()
	go func() { done <- botOutcome(t, h, "slow", "hang-token") }()
	select {
	case o := <-done:
		if o != "fallback/error" {
			t.Errorf("outcome %s", o)
		}
		t.Logf("a 10m timeout capped at 100ms: the visitor waited %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the visitor waited past max_timeout")
	}
	if n := api.calls.Load(); n != 1 {
		t.Errorf("identity calls = %d, want 1", n)
	}

	b, _ := h.remoteBots.lookup(context.Background(), "slow")
	if b.timeout != 100*time.Millisecond {
		t.Errorf("remote bot timeout = %v", b.timeout)
	}
	if _, err := newTenantPolicy(&BotsSource{MaxTimeout: -1}, nil); err == nil {
		t.Error("negative max_timeout accepted")
	}
	if p, _ := newTenantPolicy(&BotsSource{}, nil); p.maxTimeout != defaultMaxTimeout {
		t.Errorf("default max_timeout = %v", p.maxTimeout)
	}
}

// tarpit is an identity API that accepts every call and answers none until unblock.
type tarpit struct{ *recordingServer }

func newTarpit(t *testing.T) *tarpit {
	tp := new(tarpit)
	tp.recordingServer = newRecordingServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if tp.holdWhileHanging(r) {
			io.WriteString(w, `{"data":{"id":"9"}}`)
		}
	})
	tp.hangRequests()
	return tp
}

// unblock answers the calls held and those to come.
func (tp *tarpit) unblock() { tp.release() }

func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(fds)
}

// TestTarpitHoldsBoundedResources: a remote bot's API accepts calls and never answers,
// and 200 visitors with distinct tokens come and leave. The calls in flight, and so
// the connections and goroutines they hold, stay within tenantCallsInFlight; the
// visitors beyond it fall back with error without a call, and that does not count
// toward the bot's breaker.
func TestTarpitHoldsBoundedResources(t *testing.T) {
	const visitors = 200
	tp := newTarpit(t)
	bots := newBotsAPI(t)
	bots.set("tarpit", fmt.Sprintf(`{"auth_url":%q,"timeout":"10m","cache_ttl":0,"negative_ttl":0}`, tp.URL))
	// max_timeout is long, so the calls stay in flight while the test counts them.
	h := tenantHandler(t, bots, newIdentityAPI(t), BotsSource{AllowPrivate: true, MaxTimeout: caddy.Duration(time.Minute)})
	if o := botOutcome(t, h, "tarpit", ""); o != "fallback/missing_token" { // settings fetched
		t.Fatal(o)
	}
	runtime.GC()
	fdsBefore, goroutinesBefore := openFDs(t), runtime.NumGoroutine()

	var wg sync.WaitGroup
	for i := range visitors {
		ctx, leave := context.WithCancel(context.Background())
		wg.Go(func() {
			r := widgetRequest("tarpit", fmt.Sprintf("token-%d", i), "").WithContext(ctx)
			if reason := serve(t, h, r).placeholder("http.custom_auth.reason"); reason != "error" {
				t.Errorf("visitor %d: reason %q", i, reason)
			}
		})
		leave() // the visitor closes the page
	}
	wg.Wait()

	// Each call in flight holds two file descriptors here (the gateway's connection
	// and the tarpit's end of it) and about five goroutines (the call, the
	// connection's reader and writer, the tarpit's handler and its reader).
	const margin = 50
	maxFDs := fdsBefore + 2*tenantCallsInFlight + margin
	maxGoroutines := goroutinesBefore + 5*tenantCallsInFlight + margin
	// The calls that found the bound full end on their own, just after their
	// visitors left: poll for them, within a bound.
	var calls int64
	var fds, goroutines int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		calls, fds, goroutines = tp.calls.Load(), openFDs(t), runtime.NumGoroutine()
		if calls == tenantCallsInFlight && fds <= maxFDs && goroutines <= maxGoroutines {
			break
		}
	}
	t.Logf("%d visitors left a tarpit: %d calls in flight, open files %d -> %d (bound %d), goroutines %d -> %d (bound %d)",
		visitors, calls, fdsBefore, fds, maxFDs, goroutinesBefore, goroutines, maxGoroutines)
	if calls != tenantCallsInFlight || fds > maxFDs || goroutines > maxGoroutines {
		t.Fatal("a tarpit holds more than the bound")
	}

	// While the bound is full, a visitor falls back at once, without a call.
	if o := botOutcome(t, h, "tarpit", "one-more"); o != "fallback/error" {
		t.Errorf("bound full: %s", o)
	}
	if n := tp.calls.Load(); n != tenantCallsInFlight {
		t.Errorf("a call went out while the bound was full: %d calls", n)
	}
	// The API answers at last: the calls that found the bound full did not open the
	// breaker, and the bot is verified again.
	tp.unblock()
	eventually(t, "the bot to be verified", func() bool { return botOutcome(t, h, "tarpit", "after") == "verified/" })
}

func TestBotsURLTenantOptionsCaddyfile(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`custom_auth {
		bots_url https://chat.example.com/api/bots {
			max_timeout 5s
			allow_private
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if h.BotsURL.MaxTimeout != caddy.Duration(5*time.Second) || !h.BotsURL.AllowPrivate {
		t.Errorf("bots_url = %+v", h.BotsURL)
	}
	for _, tc := range []struct{ input, wantErr string }{
		{"allow_private yes", "wrong argument count"},
		{"max_timeout", "wrong argument count"},
		{"max_timeout soon", `max_timeout: invalid duration "soon"`},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("custom_auth {\nbots_url https://a.example {\n" + tc.input + "\n}\n}"))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%q: error %v, want %q", tc.input, err, tc.wantErr)
		}
	}
}

// TestMaxInFlightBoundsAllRemoteBots: 40 remote bots share one API that accepts calls
// and never answers, each with one visitor who comes and leaves. However many bots,
// the calls in flight stay within max_in_flight; the visitors beyond it fall back with
// error at once. A bot never seen meanwhile falls back with error too (its settings
// fetch counts in the bound), is not held back for it, and the bots are verified once
// the API answers: a call refused for the bound opens no breaker.
func TestMaxInFlightBoundsAllRemoteBots(t *testing.T) {
	const bound, bots = 8, 40
	tp := newTarpit(t)
	api := newBotsAPI(t)
	api.anyBot = fmt.Sprintf(`{"auth_url":%q,"timeout":"10m","cache_ttl":0,"negative_ttl":0}`, tp.URL)
	h := tenantHandler(t, api, newIdentityAPI(t), BotsSource{AllowPrivate: true, MaxTimeout: caddy.Duration(time.Minute), MaxInFlight: bound})
	for i := range bots {
		if o := botOutcome(t, h, fmt.Sprintf("bot-%d", i), ""); o != "fallback/missing_token" { // settings fetched
			t.Fatal(o)
		}
	}

	var wg sync.WaitGroup
	for i := range bots {
		ctx, leave := context.WithCancel(context.Background())
		wg.Go(func() {
			r := widgetRequest(fmt.Sprintf("bot-%d", i), "token", "").WithContext(ctx)
			if reason := serve(t, h, r).placeholder("http.custom_auth.reason"); reason != "error" {
				t.Errorf("visitor of bot-%d: reason %q", i, reason)
			}
		})
		leave()
	}
	wg.Wait()
	eventually(t, "the calls to reach the tarpit", func() bool { return tp.calls.Load() == bound })

	start := time.Now()
	if o := botOutcome(t, h, "bot-0", "one-more"); o != "fallback/error" {
		t.Errorf("bound full: %s", o)
	}
	if o := botOutcome(t, h, "never-seen", ""); o != "fallback/error" {
		t.Errorf("a bot never seen, bound full: %s", o)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("visitors who found the bound full waited %v", took)
	}
	if n := tp.calls.Load(); n != bound {
		t.Errorf("calls went out while the bound was full: %d calls, bound %d", n, bound)
	}

	// Calls the bound refused tell nothing about the API: however many, the bot's
	// breaker stays closed.
	for i := range defaultBreakerFailures + 1 {
		botOutcome(t, h, "bot-0", fmt.Sprintf("refused-%d", i))
	}

	tp.unblock()
	eventually(t, "the bots to be verified", func() bool {
		return botOutcome(t, h, "bot-0", "after") == "verified/" && botOutcome(t, h, "bot-1", "after") == "verified/" &&
			botOutcome(t, h, "never-seen", "after") == "verified/"
	})
}

// TestTenantClientClosesIdleConnections: when a config is unloaded, its tenant client
// closes its idle connections through the slot bound and the tracing around them.
func TestTenantClientClosesIdleConnections(t *testing.T) {
	closed := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			select {
			case closed <- struct{}{}:
			default:
			}
		}
	}
	srv.Start()
	defer srv.Close()
	client := newTenantClient(true, newCallSlots(4))
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	client.CloseIdleConnections()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection is still open")
	}
}

// TestTenantRefreshesApart: a tenant's whitelist and JWKS refreshes take slots from a
// pool of the tenants' own, never the operator's, and a tenant's whitelist_url is
// fetched at most once a minute, whatever refresh it sets.
func TestTenantRefreshesApart(t *testing.T) {
	listed := provision(t, &Handler{})
	tenant, err := newTenantPolicy(&BotsSource{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	operator := operatorPolicy(caddy.NewReplacer(), listed.env.client, nil)
	tenantSlots, operatorSlots := tenant.refreshSlotsOf(listed.env), operator.refreshSlotsOf(listed.env)
	if operatorSlots != listed.env.refreshSlots || tenantSlots == operatorSlots || cap(tenantSlots) != maxBackgroundRefreshes {
		t.Errorf("refresh slots: tenant %p (%d), operator %p, environment %p", tenantSlots, cap(tenantSlots), operatorSlots, listed.env.refreshSlots)
	}
	source := &WhitelistSource{URL: "https://api.tenant.example.com/domains", Refresh: caddy.Duration(time.Nanosecond)}
	rw, err := newRemoteWhitelist("remote", source, time.Second, tenant.expand, tenant, listed.env)
	if err != nil {
		t.Fatal(err)
	}
	if rw.list.ttl != minTenantRefresh || rw.list.slots != tenantSlots {
		t.Errorf("a tenant's list: refreshed every %v in pool %p, want %v in %p", rw.list.ttl, rw.list.slots, minTenantRefresh, tenantSlots)
	}
	own, err := newRemoteWhitelist("listed", source, time.Second, operator.expand, operator, listed.env)
	if err != nil {
		t.Fatal(err)
	}
	if own.list.ttl != time.Nanosecond {
		t.Errorf("the operator's refresh = %v, want 1ns as written", own.list.ttl)
	}
}
