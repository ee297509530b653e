package customauth

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// BotsSource is the chat backend's API that answers the settings of bots that are not
// listed in the config: `GET <url>/<url-escaped bot id>` answers a bot's JSON form,
// 404 an unknown bot.
type BotsSource struct {
	// The API's base URL, an absolute http or https URL.
	URL string `json:"url,omitempty"`

	// Headers sent with each request, e.g. an API key. Default: none.
	Headers map[string]string `json:"headers,omitempty"`

	// How long an answer is used before the bot's settings are asked again; after
	// that the cached settings keep serving while they are asked again in the
	// background. Default: 1m.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Cap on a remote bot's `timeout`: however long a tenant sets it, a visitor and
	// a connection never wait longer for its identity, whitelist or JWKS API.
	// Default: 10s.
	MaxTimeout caddy.Duration `json:"max_timeout,omitempty"`

	// Lets a remote bot's `auth_url`, `whitelist_url` and `jwks_url` reach loopback, private
	// (RFC 1918, IPv6 ULA), link-local, unspecified, multicast and other
	// special-purpose addresses, Caddy's admin endpoint included. Only for a chat
	// backend whose every tenant is trusted, or for tests. Default: false, such
	// connections are refused.
	AllowPrivate bool `json:"allow_private,omitempty"`

	// Time limit of one settings request. Only the visitors of a bot with no settings
	// cached wait for it; refreshes happen in the background. Default: 3s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Bound on the calls in flight of all remote bots together: identity calls and
	// whitelist, JWKS and settings fetches. A visitor whose call finds it full falls
	// back with `error` at once, without waiting, so that however many bots a tenant
	// has, APIs that accept connections and never answer hold at most this many
	// connections. Default: 256.
	MaxInFlight int `json:"max_in_flight,omitempty"`
}

// Settings from bots_url are written by the chat product's tenants, from its
// dashboard: strangers to the operator. What they may do is bounded here.

// Defaults and bounds of tenants' settings.
const (
	defaultMaxTimeout = 10 * time.Second

	// tenantCallsInFlight bounds the identity calls in flight for one remote bot. An
	// API that accepts connections and never answers then holds at most this many
	// connections (and about five goroutines each) for at most max_timeout, however
	// many visitors come. 32 calls at once serve about 300 sign-ins a second from an
	// API that answers in 100 ms; visitors with the same token share one call, and
	// verdicts are cached, so a chat widget's traffic stays far below that.
	tenantCallsInFlight = 32

	// defaultMaxInFlight bounds the calls in flight of all remote bots together
	// (bots_url's max_in_flight): a tenant has as many bots as it likes, so the bound
	// per bot alone does not bound the process. 256 calls that hang for max_timeout
	// hold 256 connections, about 512 file descriptors and 1,300 goroutines.
	defaultMaxInFlight = 256
)

// newTenantPolicy is what a remote bot may do: placeholders stay literal, so a tenant
// cannot read the gateway's environment; its URLs are dialled by newTenantClient's client; its
// timeout is capped; its calls in flight are bounded; its breaker is its own; its
// background refreshes have a pool of their own, shared by every remote bot.
// slots is the bound of all remote bots' calls together (remoteBots.slots).
func newTenantPolicy(cfg *BotsSource, slots callSlots) (*botPolicy, error) {
	maxTimeout, err := durationOrDefault("max_timeout", cfg.MaxTimeout, defaultMaxTimeout)
	if err != nil {
		return nil, err
	}
	return &botPolicy{
		expand:        func(s string) string { return s },
		client:        newTenantClient(cfg.AllowPrivate, slots),
		maxTimeout:    maxTimeout,
		callsInFlight: tenantCallsInFlight,
		tenant:        true,
		allowPrivate:  cfg.AllowPrivate,
		refreshSlots:  newCallSlots(maxBackgroundRefreshes),
	}, nil
}

// newTenantClient is the HTTP client of tenant URLs (a remote bot's auth_url,
// whitelist_url and jwks_url). Unless allowPrivate, it refuses to connect to an address of the
// gateway's machine or of a private network, checked when dialled, after name
// resolution, so a name that resolves to such an address (DNS rebinding included) does
// not get through. It never uses the environment's proxy: the proxy would dial on the
// tenant's behalf, where the check cannot see. Its calls take one of slots, shared by
// every remote bot, for as long as they are in flight.
//
// Its connection pool is bounded with them: at most as many idle connections in all
// as calls in flight, and per host as one bot's calls. No MaxConnsPerHost: many
// tenants' bots may well name one SaaS identity API, and slots already bound what
// they hold together.
func newTenantClient(allowPrivate bool, slots callSlots) *http.Client {
	control := refuseSpecialAddress
	if allowPrivate {
		control = nil
	}
	transport := newAPITransport(nil, control)
	transport.MaxIdleConns = max(cap(slots), tenantCallsInFlight)
	transport.MaxIdleConnsPerHost = tenantCallsInFlight
	transport.IdleConnTimeout = 30 * time.Second
	return newHTTPClient(boundedTransport{slots: slots, next: transport})
}

// refuseSpecialAddress is a net.Dialer's ControlContext: it sees the resolved address
// of each connection attempt, before it is made.
func refuseSpecialAddress(_ context.Context, _, address string, _ syscall.RawConn) error {
	addrPort, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("tenant URL: unexpected address %q", address)
	}
	kind := specialAddress(addrPort.Addr())
	if kind == "" {
		own, err := ownAddress(addrPort.Addr())
		if err != nil {
			return fmt.Errorf("tenant URL: cannot tell whether %s is the gateway's own address: %w", addrPort.Addr(), err)
		}
		if own {
			kind = "gateway's own"
		}
	}
	if kind != "" {
		return fmt.Errorf("tenant URL: %s is a %s address, which a bot from bots_url may not reach (unless allow_private)", addrPort.Addr(), kind)
	}
	return nil
}

// ownAddress reports whether a is an address of one of the gateway's network
// interfaces: a public one reaches the gateway's own machine as surely as loopback.
// The interfaces are read at each new connection, since addresses change.
func ownAddress(a netip.Addr) (bool, error) {
	ifaceAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return false, err
	}
	a = a.WithZone("").Unmap()
	for _, ifaceAddr := range ifaceAddrs {
		ipNet, ok := ifaceAddr.(*net.IPNet)
		if !ok {
			continue
		}
		if own, ok := netip.AddrFromSlice(ipNet.IP); ok && own.Unmap() == a {
			return true, nil
		}
	}
	return false, nil
}

// specialAddress says what kind of special-purpose address a is, one that a tenant's
// URL may not reach; "" for an ordinary public address.
func specialAddress(a netip.Addr) string {
	a = a.WithZone("")
	if v4, ok := embeddedIPv4(a); ok {
		a = v4
	}
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast(): // 169.254.169.254, the cloud metadata service, included
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	for _, p := range reservedPrefixes {
		if p.prefix.Contains(a) {
			return p.kind
		}
	}
	return ""
}

// reservedPrefixes are the special-purpose ranges (IANA's registries) that net/netip's
// predicates leave out, and that lead to the gateway itself or to a network that is
// not the public internet.
var reservedPrefixes = []struct {
	prefix netip.Prefix
	kind   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"}, // 0.x.x.x reaches the gateway itself on Linux
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"}, // never public; some networks use them inside
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},  // 255.255.255.255, broadcast, included
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"}, // deprecated; where ::1 and :: are too
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// Prefixes of IPv6 addresses that carry an IPv4 address, which is then the address
// the packets reach.
var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: in the last 32 bits
	sixToFourNet = netip.MustParsePrefix("2002::/16")    // RFC 3056: in bits 16 to 48
)

// embeddedIPv4 returns the IPv4 address an IPv6 address stands for: IPv4-mapped
// (::ffff:a.b.c.d), NAT64 and 6to4.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	switch {
	case a.Is4In6():
		return a.Unmap(), true
	case nat64Prefix.Contains(a):
		b := a.As16()
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFourNet.Contains(a):
		b := a.As16()
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return a, false
}
