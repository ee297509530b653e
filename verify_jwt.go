package customauth

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/custom-auth/custom_auth/contact"
)

// JWTSettings is a bot's `verify_jwt`: the visitor's access token is a JWT that the
// customer signed (Intercom's `intercom_user_jwt`, Zendesk's `loginUser` token,
// Freshchat, Drift…), verified by the gateway itself instead of an identity API.
type JWTSettings struct {
	// The HS256 secret the customer signs tokens with, at least 32 bytes. Exactly one
	// of `secret` and `jwks_url` is required. Default: none.
	Secret string `json:"secret,omitempty"`

	// The customer's public keys: an absolute http or https URL that answers a JWKS.
	// Tokens are signed with RS256 (RSA, 2048 to 8192 bits), ES256 (P-256) or EdDSA
	// (Ed25519), each key verifying only its own algorithm; the first 100 keys are
	// read. The keys are fetched on
	// first need, refreshed every 5m in the background, and fetched again, at most
	// once a minute, for a token whose `kid` is not among them. Default: none.
	JWKSURL string `json:"jwks_url,omitempty"`

	// The `iss` a token must carry. Default: none, `iss` is not checked.
	Issuer string `json:"issuer,omitempty"`

	// The `aud` a token must carry. Default: the bot id; required for `bot *`, which
	// has no one id.
	Audience string `json:"audience,omitempty"`
}

// Timings and bounds of local token verification.
const (
	// tokenLeeway is the clock skew tolerated between the customer's servers, which
	// sign the tokens, and the gateway.
	tokenLeeway = 5 * time.Second
	// jwksRefresh is the age at which a JWKS is fetched again in the background.
	jwksRefresh = 5 * time.Minute
	// unknownKeyRefetch is the least time between two fetches for a token whose kid
	// the JWKS lacks: a new key works as soon as the customer publishes it, and
	// tokens with made-up kids cannot make the gateway flood the customer's server.
	unknownKeyRefetch = time.Minute
	// maxTokenSize bounds a token that is read: a customer's token is a few hundred
	// bytes, and parsing a long one costs its base64 and JSON decoding.
	maxTokenSize = 16 << 10
	// maxJWKSSize bounds a JWKS answer; a provider's has a few keys of a few hundred
	// bytes each.
	maxJWKSSize = 64 << 10
)

// check requires one source of keys. Provision and the Caddyfile both call it, before
// placeholders are expanded.
func (s *JWTSettings) check(botID string) error {
	switch {
	case s.Secret == "" && s.JWKSURL == "":
		return errors.New("verify_jwt: secret or jwks_url is required")
	case s.Secret != "" && s.JWKSURL != "":
		return errors.New("verify_jwt: secret and jwks_url exclude each other; give one")
	case botID == "*" && s.Audience == "":
		return errors.New("verify_jwt: audience is required for bot *, which has no one bot id to expect")
	}
	return nil
}

// checkJWTSecret refuses an HS256 secret shorter than the hash (RFC 7518 §3.2).
func checkJWTSecret(secret string) error {
	if len(secret) < contact.MinHMACKeySize {
		return fmt.Errorf("secret: an HS256 secret must be at least %d bytes, not %d", contact.MinHMACKeySize, len(secret))
	}
	return nil
}

// jwtVerifier verifies a bot's tokens locally. It answers for the bot in place of the
// identity API (botIdentifier), and its verdicts are cached like the API's.
type jwtVerifier struct {
	// settings are the bot's verify_jwt with placeholders expanded and the audience
	// set: what shapes a verdict (settingsKey).
	settings JWTSettings
	parser   *jwt.Parser
	secret   []byte        // with secret
	jwks     *remoteKeySet // with jwks_url
	env      *environment
}

// Algorithms of each source of keys.
var (
	secretMethods = []string{jwt.SigningMethodHS256.Alg()}
	jwksMethods   = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg()}
)

// newJWTVerifier prepares a bot's verify_jwt, checked by check before; the JWKS is
// fetched as policy allows: with the operator's client or a tenant's.
func newJWTVerifier(botID string, cfg *JWTSettings, timeout time.Duration, policy *botPolicy, env *environment) (*jwtVerifier, error) {
	expand := policy.expand
	v := &jwtVerifier{env: env}
	s := &v.settings
	for _, opt := range []struct {
		name     string
		raw      string
		expanded *string
	}{
		{"secret", cfg.Secret, &s.Secret},
		{"jwks_url", cfg.JWKSURL, &s.JWKSURL},
		{"issuer", cfg.Issuer, &s.Issuer},
		{"audience", cfg.Audience, &s.Audience},
	} {
		var err error
		if *opt.expanded, err = expandConfigured(opt.name, opt.raw, expand); err != nil {
			return nil, err
		}
	}
	s.Audience = cmp.Or(s.Audience, botID)

	methods := secretMethods
	if s.Secret != "" {
		if err := checkJWTSecret(s.Secret); err != nil {
			return nil, err
		}
		v.secret = []byte(s.Secret)
	} else {
		if err := checkURL(s.JWKSURL); err != nil {
			return nil, fmt.Errorf("jwks_url: %w", err)
		}
		v.jwks = newRemoteKeySet(botID, s.JWKSURL, timeout, policy, env)
		methods = jwksMethods
	}

	options := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithAudience(s.Audience),
		// Read at each token, so that tests can move the environment's clock.
		jwt.WithTimeFunc(func() time.Time { return env.now() }),
	}
	if s.Issuer != "" {
		options = append(options, jwt.WithIssuer(s.Issuer))
	}
	v.parser = jwt.NewParser(options...)
	return v, nil
}

// errNoKeys is a token whose key cannot be had: its JWKS was never fetched, or could
// not be fetched again for a new key. It is an error, not a rejection: the token may
// well be good.
var errNoKeys = errors.New("the customer's keys cannot be had")

// verify verifies the token and reads the contact from its claims, whose primary key
// is identifyBy's. A token that fails any check is rejected, with the check in the
// verdict's error.
func (v *jwtVerifier) verify(ctx context.Context, token, identifyBy string) verdict {
	if len(token) > maxTokenSize {
		return verdict{kind: verdictRejected, err: fmt.Errorf("token refused unread: over %d bytes", maxTokenSize), maxAge: -1}
	}
	var claims tokenClaims
	parsed, err := v.parser.ParseWithClaims(token, &claims, v.keyfunc(ctx))
	if err == nil {
		err = checkCritical(parsed)
	}
	switch {
	case errors.Is(err, errNoKeys):
		return failure(err, false)
	case err != nil:
		return verdict{kind: verdictRejected, err: fmt.Errorf("token refused: %w", err), maxAge: -1}
	}
	data, raw, err := claims.contactData()
	if err != nil {
		return failure(fmt.Errorf("token's contact: %w", err), false)
	}
	id, err := identityOf(data, raw, identifyBy)
	if err != nil {
		return failure(fmt.Errorf("token's contact: %w", err), false)
	}
	// The verdict is cached no longer than the token is valid; exp is there
	// (WithExpirationRequired).
	return verdict{kind: verdictVerified, identity: id, maxAge: max(0, claims.ExpiresAt.Sub(v.env.now()))}
}

// keyfunc gives the parser the key of a token whose algorithm it has already checked
// against the source's (WithValidMethods).
func (v *jwtVerifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	if v.jwks == nil {
		return func(*jwt.Token) (any, error) { return v.secret, nil }
	}
	return func(token *jwt.Token) (any, error) { return v.jwks.keyFor(ctx, token) }
}

// String says how the bot's tokens are verified, with no secret and no URL credential.
func (v *jwtVerifier) String() string {
	if v.jwks == nil {
		return "verify_jwt: HS256 with the configured secret"
	}
	return "verify_jwt: keys from " + redactURL(v.jwks.url)
}

// checkCritical refuses a `crit` header: it names extensions that the token requires
// its verifier to understand, and none is supported (RFC 7515 §4.1.11).
func checkCritical(token *jwt.Token) error {
	if _, ok := token.Header["crit"]; ok {
		return errors.New("the token has a crit header: no JWS extension is supported")
	}
	return nil
}

// tokenClaims are a customer's token: the registered claims, which the parser checks,
// and the contact's.
type tokenClaims struct {
	jwt.RegisteredClaims
	ExternalID    json.RawMessage `json:"external_id"`
	Name          json.RawMessage `json:"name"`
	Email         json.RawMessage `json:"email"`
	EmailVerified json.RawMessage `json:"email_verified"`
	PhoneNumber   json.RawMessage `json:"phone_number"`
	CountryCode   json.RawMessage `json:"country_code"`
	Avatar        json.RawMessage `json:"avatar"`
	Label         json.RawMessage `json:"label"`
	Metadata      json.RawMessage `json:"metadata"`
}

// contactData is the contact's data object, as an identity API would answer it: `id`
// from `external_id`, else `sub`; `email` when emailVerified; the other fields from
// the claims of their names. raw is its JSON.
func (c *tokenClaims) contactData() (data contact.Data, raw []byte, err error) {
	id := c.ExternalID
	if absent(id) && c.Subject != "" {
		id, _ = json.Marshal(c.Subject) // a string always marshals
	}
	email := c.Email
	if !emailVerified(c.EmailVerified) {
		email = nil
	}
	data = make(contact.Data, len(contact.Fields))
	for field, value := range map[string]json.RawMessage{
		"id": id, "name": c.Name, "email": email, "phone_number": c.PhoneNumber,
		"country_code": c.CountryCode, "avatar": c.Avatar, "label": c.Label, "metadata": c.Metadata,
	} {
		if !absent(value) {
			data[field] = value
		}
	}
	raw, err = json.Marshal(data)
	return data, raw, err
}

// emailVerified reports whether an `email_verified` claim lets the email through:
// absent, null or the JSON value true. A string ("true" included), a number or any
// other value drops the email, so that an identify_by email bot never matches on an
// address the customer did not vouch for.
func emailVerified(claim json.RawMessage) bool {
	return absent(claim) || string(bytes.TrimSpace(claim)) == "true"
}

// absent reports whether a claim is missing or null.
func absent(claim json.RawMessage) bool {
	claim = bytes.TrimSpace(claim)
	return len(claim) == 0 || string(claim) == "null"
}

// remoteKeySet is the customer's public keys from a bot's jwks_url, kept fresh as a
// remoteValue: fetched on first need, refreshed every jwksRefresh in the background
// while the keys at hand serve (also while refreshes fail), and not asked again for a
// few seconds after a failure. Its own policy on top: a token whose kid is not among
// the keys makes one fetch at once, at most once per unknownKeyRefetch.
//
// keyfunc (MicahParks/keyfunc) would fetch and refresh a JWKS too, but its policy
// does not fit a gateway of many bots and untrusted tenants:
//   - it runs a ticker goroutine per key set for the set's life, while here a refresh
//     happens only when a token finds the keys old, so an idle bot costs nothing and
//     thousands of remote bots are not thousands of tickers;
//   - it limits refetches for unknown kids with a wall-clock rate limiter that a token
//     waits for, up to a minute, while here a token never waits for the limit (within
//     it, an unknown kid is simply not found), and the limit follows the handler's
//     clock;
//   - it swallows refresh errors, so a token whose key cannot be had because the JWKS
//     is down is told "key not found", a rejection, while here it is an error
//     (errNoKeys): the token may well be good, and its visitor is asked instead.
type remoteKeySet struct {
	bot      string
	url      string
	timeout  time.Duration
	client   *http.Client
	env      *environment
	cacheKey string
	keys     remoteValue[*keySet]

	mu sync.Mutex
	// unknownKeyAt is when a token with an unknown kid last made a fetch.
	unknownKeyAt time.Time
}

// newRemoteKeySet prepares the fetching of a bot's JWKS with the bot's client, its
// refreshes under the bot's background context.
func newRemoteKeySet(botID, url string, timeout time.Duration, policy *botPolicy, env *environment) *remoteKeySet {
	ks := &remoteKeySet{bot: botID, url: url, timeout: timeout, client: policy.client, env: env}
	// As for whitelists (newRemoteWhitelist): the bot and the client it is fetched
	// with (fetchScope) are part of the key.
	source, _ := json.Marshal(struct {
		BotID, URL, Scope string
	}{botID, url, policy.fetchScope()})
	ks.cacheKey = "jwks\x00" + string(source)
	ks.keys = remoteValue[*keySet]{env: env, background: policy.backgroundOf(env), slots: policy.refreshSlotsOf(env), ttl: jwksRefresh, fetch: ks.fetch,
		failed: func(_ string, err error) {
			env.warn("jwks_url:"+botID, "fetching the JWKS failed; keeping the keys at hand",
				zap.String("bot", botID), zap.Error(err))
		}}
	return ks
}

// keySet is a fetched JWKS: the keys this module can use, and those it ignores.
type keySet struct {
	keys    []publicKey
	ignored []ignoredKey
}

// publicKey is a JWKS key and the one algorithm it verifies.
type publicKey struct {
	kid string
	alg string
	key any // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey, as golang-jwt takes them
}

// keyFor finds the key of a token: the one of its kid, which must be for the token's
// algorithm; without a kid, each key for that algorithm is tried.
func (ks *remoteKeySet) keyFor(ctx context.Context, token *jwt.Token) (any, error) {
	set, err := ks.current(ctx)
	if err != nil {
		return nil, err
	}
	alg := token.Method.Alg()
	kidValue, hasKID := token.Header["kid"]
	if !hasKID {
		return set.keysFor(alg)
	}
	kid, ok := kidValue.(string)
	if !ok {
		return nil, errors.New("the token's kid is not a string")
	}
	key, found := set.find(kid)
	if why := set.ignoredWhy(kid); !found && why != nil {
		return nil, fmt.Errorf("%w: key %q is ignored: %v", errNoKeys, kid, why)
	}
	if !found {
		if set, err = ks.fetchForUnknownKey(ctx, set); err != nil {
			return nil, err
		}
		if key, found = set.find(kid); !found {
			return nil, fmt.Errorf("no key %q in the JWKS", kid)
		}
	}
	if key.alg != alg {
		return nil, fmt.Errorf("key %q verifies %s, not %s", kid, key.alg, alg)
	}
	return key.key, nil
}

func (s *keySet) find(kid string) (publicKey, bool) {
	for _, k := range s.keys {
		if k.kid == kid {
			return k, true
		}
	}
	return publicKey{}, false
}

// ignoredWhy says why the key of a kid is ignored; nil when it is not.
func (s *keySet) ignoredWhy(kid string) error {
	for _, k := range s.ignored {
		if k.kid == kid {
			return k.why
		}
	}
	return nil
}

// maxKeysWithoutKID bounds the keys a token without a kid is tried against: each try
// with an RSA key of maxRSABits costs about 2 ms, and a set may have maxJWKSKeys.
const maxKeysWithoutKID = 4

// keysFor are the keys of one algorithm, for a token without a kid. With more than
// maxKeysWithoutKID of them, such a token is an error: it must name its key.
func (s *keySet) keysFor(alg string) (jwt.VerificationKeySet, error) {
	var set jwt.VerificationKeySet
	for _, k := range s.keys {
		if k.alg == alg {
			set.Keys = append(set.Keys, k.key)
		}
	}
	switch {
	case len(set.Keys) == 0:
		return set, fmt.Errorf("the JWKS has no %s key", alg)
	case len(set.Keys) > maxKeysWithoutKID:
		return jwt.VerificationKeySet{}, fmt.Errorf("%w: the token names no kid, and the JWKS has %d %s keys (over %d, a token must name its key)",
			errNoKeys, len(set.Keys), alg, maxKeysWithoutKID)
	}
	return set, nil
}

// current returns the keys at hand, fetching them on first need.
func (ks *remoteKeySet) current(ctx context.Context) (*keySet, error) {
	set, err := ks.keys.get(ctx, ks.cacheKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoKeys, err)
	}
	return set, nil
}

// fetchForUnknownKey fetches the keys again for a token whose kid the set seen lacks,
// unless a token did so less than unknownKeyRefetch ago; it returns the keys then at
// hand, after a fetch under way. While the last fetch failed, a new key cannot be
// had: an error.
func (ks *remoteKeySet) fetchForUnknownKey(ctx context.Context, seen *keySet) (*keySet, error) {
	ks.mu.Lock()
	now := ks.env.now()
	mayFetch := ks.unknownKeyAt.IsZero() || now.Sub(ks.unknownKeyAt) >= unknownKeyRefetch
	if mayFetch {
		ks.unknownKeyAt = now
	}
	ks.mu.Unlock()

	var set *keySet
	var err error
	if mayFetch {
		set, err = ks.keys.refetch(ctx, ks.cacheKey, seen)
	} else if set, err = ks.keys.latest(ctx, ks.cacheKey); err == nil {
		err = ks.keys.lastError(ks.cacheKey)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoKeys, err)
	}
	return set, nil
}

// fetch asks jwks_url for the keys (remoteValue.fetch).
func (ks *remoteKeySet) fetch(ctx context.Context, _ string, _ *keySet) (*keySet, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, ks.timeout)
	defer cancel()
	answer, err := callAPI(ctx, ks.client, http.MethodGet, ks.url, nil, nil, maxJWKSSize)
	if err != nil {
		return nil, 0, fmt.Errorf("fetching jwks_url: %w", err)
	}
	if answer.code < 200 || answer.code > 299 {
		return nil, 0, fmt.Errorf("jwks_url answered %d", answer.code)
	}
	keys, ignored, err := parseJWKS(answer.body)
	if err != nil {
		return nil, 0, err
	}
	if len(ignored) > 0 {
		ks.env.warn("jwks_url-ignored:"+ks.bot, "the JWKS has keys that are ignored; a token naming one is an error",
			zap.String("bot", ks.bot), zap.Strings("ignored", reasons(ignored)))
	}
	cost := jwksOverhead + 2*int64(len(answer.body)) + ignoredKeyOverhead*int64(len(ignored))
	return &keySet{keys: keys, ignored: ignored}, cost, nil
}

// jwksOverhead is the heap of a cached key set besides its answer's size twice (the
// keys decoded from it): the entry, the slices and ristretto's bookkeeping; and
// ignoredKeyOverhead that of each ignored key besides its kid. Estimates, on the high
// side; a JWKS is at most maxJWKSSize.
const (
	jwksOverhead       = 1024
	ignoredKeyOverhead = 64
)

// Bounds on what a JWKS may cost. Verifying with an RSA key costs time that grows with
// the square of its size, and a JWKS is written by whoever the bot's jwks_url belongs
// to (a tenant's, for a remote bot): a 118-kbit modulus cost half a CPU-second per
// bogus token. So only keys of bounded cost are used, and only so many of them.
const (
	minRSABits  = 2048 // RFC 7518 §3.3
	maxRSABits  = 8192
	maxJWKSKeys = 100
)

// allowRSAKeysOfMaxBits raises go-jose's limit to maxRSABits. go-jose refuses an RSA
// modulus over jose.MaxRSAModulusBits (4096 by default) as it reads a key, and asks applications that need larger keys to raise it before any
// parsing. Keys up to maxRSABits are used here. The limit is the whole process's, and
// 8192 bits still bound a key's cost for every reader of JWKs: verifying with e=65537
// takes microseconds; it is moduli of 100 kbit that cost seconds.
func allowRSAKeysOfMaxBits() {
	if jose.MaxRSAModulusBits < maxRSABits {
		jose.MaxRSAModulusBits = maxRSABits
	}
}

// parseJWKS reads the keys a JWKS has for signatures with RS256 (RSA of minRSABits to
// maxRSABits), ES256 (P-256) or EdDSA (Ed25519), through go-jose, from its first
// maxJWKSKeys entries. Any other key (for encryption, of another type, size or curve,
// private, malformed, or beyond maxJWKSKeys) is ignored: a provider may list keys for
// others. A JWKS with none of ours is an error.
func parseJWKS(body []byte) (keys []publicKey, ignored []ignoredKey, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("jwks_url answer is not a JWKS: %w", err)
	}
	for i, raw := range set.Keys {
		if i >= maxJWKSKeys {
			// Only a kid can name it: one without is not kept, so that a set of
			// many tiny entries costs no more than its answer.
			if kid := kidOf(raw); kid != "" {
				ignored = append(ignored, ignoredKey{kid, errOverMaxKeys})
			}
			continue
		}
		key, err := parseJWK(raw)
		if err != nil {
			ignored = append(ignored, ignoredKey{kidOf(raw), fmt.Errorf("key %d: %w", i+1, err)})
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, ignored, fmt.Errorf("the JWKS has no RS256, ES256 or EdDSA signing key (%s)", strings.Join(reasons(ignored), "; "))
	}
	return keys, ignored, nil
}

// ignoredKey is a key of a JWKS that is not used, and why: a token naming its kid is
// an error, not a rejection, since the key may well be the customer's.
type ignoredKey struct {
	kid string
	why error
}

// errOverMaxKeys is why the keys of a set beyond its first maxJWKSKeys are ignored.
var errOverMaxKeys = fmt.Errorf("over %d keys a set", maxJWKSKeys)

// maxReasons bounds the reasons a log line or an error gives for ignored keys.
const maxReasons = 10

// reasons says why keys are ignored: the first maxReasons, and how many more.
func reasons(ignored []ignoredKey) []string {
	n := min(len(ignored), maxReasons)
	whys := make([]string, n, n+1)
	for i, k := range ignored[:n] {
		whys[i] = k.why.Error()
	}
	if len(ignored) > n {
		whys = append(whys, fmt.Sprintf("and %d more", len(ignored)-n))
	}
	return whys
}

func kidOf(raw json.RawMessage) string {
	var k struct {
		KID string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &k) // a key that is not an object has no kid
	return k.KID
}

// parseJWK reads a public signing key and the one algorithm it verifies, which
// follows from its type. A key that declares another algorithm is refused rather than
// trusted for what its type allows.
func parseJWK(raw json.RawMessage) (publicKey, error) {
	var private struct {
		D json.RawMessage `json:"d"`
	}
	if json.Unmarshal(raw, &private) == nil && private.D != nil {
		return publicKey{}, errors.New("a private key") // go-jose would check it at length
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		return publicKey{}, err
	}
	if k.Use != "" && k.Use != "sig" {
		return publicKey{}, fmt.Errorf("use %q: not a signing key", k.Use)
	}
	key := publicKey{kid: k.KeyID, key: k.Key}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return publicKey{}, fmt.Errorf("RSA key of %d bits, not %d to %d", bits, minRSABits, maxRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 {
			return publicKey{}, fmt.Errorf("RSA key: e must be an odd number of at least 3, not %d", pub.E)
		}
		key.alg = jwt.SigningMethodRS256.Alg()
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return publicKey{}, fmt.Errorf("EC key on %s, not P-256", pub.Curve.Params().Name)
		}
		key.alg = jwt.SigningMethodES256.Alg()
	case ed25519.PublicKey:
		key.alg = jwt.SigningMethodEdDSA.Alg()
	default:
		return publicKey{}, fmt.Errorf("unsupported key %T", k.Key)
	}
	if k.Algorithm != "" && k.Algorithm != key.alg {
		return publicKey{}, fmt.Errorf("alg %q on a key for %s", k.Algorithm, key.alg)
	}
	return key, nil
}
