package contact

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Why an assertion is refused; test with errors.Is.
var (
	ErrMalformed  = errors.New("contact: malformed assertion")
	ErrAlgorithm  = errors.New("contact: signing algorithm not allowed")
	ErrUnknownKey = errors.New("contact: unknown signing key")
	ErrSignature  = errors.New("contact: invalid signature")
	ErrExpired    = errors.New("contact: assertion expired")
	// ErrNotYetValid: the assertion's nbf or iat is later than now plus the leeway.
	ErrNotYetValid = errors.New("contact: assertion not valid yet")
	ErrAudience    = errors.New("contact: assertion is for another bot")
	ErrIssuer      = errors.New("contact: assertion not issued by custom_auth")
)

// DefaultLeeway is the clock skew tolerated between the gateway and the backend.
const DefaultLeeway = 5 * time.Second

// Verifier checks assertions. Its algorithms come from its keys, never from the token,
// so `alg: none` and HS256 tokens made with a public key are refused.
type Verifier struct {
	keys   map[string]verifyKey // by kid; "" for the only key of an HMAC verifier
	algs   []string             // the algorithms of the keys, the only ones accepted
	leeway time.Duration
	now    func() time.Time
}

type verifyKey struct {
	method jwt.SigningMethod
	key    any
}

// VerifierOption changes a Verifier's defaults.
type VerifierOption func(*Verifier)

// WithLeeway sets the clock skew tolerated; default DefaultLeeway.
func WithLeeway(d time.Duration) VerifierOption { return func(v *Verifier) { v.leeway = d } }

// WithClock sets the verifier's clock; default time.Now.
func WithClock(now func() time.Time) VerifierOption { return func(v *Verifier) { v.now = now } }

// NewHMACVerifier verifies HS256 assertions made with the gateway's sign_key.
func NewHMACVerifier(key []byte, opts ...VerifierOption) (*Verifier, error) {
	if len(key) < MinHMACKeySize {
		return nil, fmt.Errorf("an HS256 key must be at least %d bytes, not %d", MinHMACKeySize, len(key))
	}
	return newVerifier(map[string]verifyKey{"": {jwt.SigningMethodHS256, key}}, opts), nil
}

// NewJWKSVerifier verifies EdDSA and ES256 assertions with the public keys the gateway
// publishes at its jwks_path. Each key verifies only its own algorithm.
func NewJWKSVerifier(jwks []byte, opts ...VerifierOption) (*Verifier, error) {
	var set struct {
		Keys []JWK `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, fmt.Errorf("reading the JWKS: %w", err)
	}
	keys := make(map[string]verifyKey, len(set.Keys))
	for _, k := range set.Keys {
		key, err := k.publicKey()
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.KeyID, err)
		}
		keys[k.KeyID] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("the JWKS has no key")
	}
	return newVerifier(keys, opts), nil
}

// NewPublicKeyVerifier verifies with the given Ed25519 or ECDSA P-256 public keys.
func NewPublicKeyVerifier(keys []crypto.PublicKey, opts ...VerifierOption) (*Verifier, error) {
	byID := make(map[string]verifyKey, len(keys))
	for _, pub := range keys {
		jwk, method, err := publicJWK(pub)
		if err != nil {
			return nil, err
		}
		byID[jwk.KeyID] = verifyKey{method, pub}
	}
	if len(byID) == 0 {
		return nil, errors.New("no public key")
	}
	return newVerifier(byID, opts), nil
}

func newVerifier(keys map[string]verifyKey, opts []VerifierOption) *Verifier {
	v := &Verifier{keys: keys, leeway: DefaultLeeway, now: time.Now}
	for _, k := range keys {
		if !slices.Contains(v.algs, k.method.Alg()) {
			v.algs = append(v.algs, k.method.Alg())
		}
	}
	for _, opt := range opts {
		opt(v)
	}
	return v
}

// publicKey reads a key of the gateway's JWKS. A key that declares another algorithm,
// or a use other than signing, is refused rather than trusted for what its type allows.
func (k JWK) publicKey() (verifyKey, error) {
	key, err := k.parse()
	if err != nil {
		return key, err
	}
	if k.Algorithm != "" && k.Algorithm != key.method.Alg() {
		return verifyKey{}, fmt.Errorf("alg %q does not match a %s %s key", k.Algorithm, k.KeyType, k.Curve)
	}
	if k.Use != "" && k.Use != "sig" {
		return verifyKey{}, fmt.Errorf("use %q: not a signing key", k.Use)
	}
	return key, nil
}

func (k JWK) parse() (verifyKey, error) {
	x, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil {
		return verifyKey{}, fmt.Errorf("x: %w", err)
	}
	switch {
	case k.KeyType == "OKP" && k.Curve == "Ed25519" && len(x) == ed25519.PublicKeySize:
		return verifyKey{jwt.SigningMethodEdDSA, ed25519.PublicKey(x)}, nil
	case k.KeyType == "EC" && k.Curve == "P-256":
		y, err := base64.RawURLEncoding.DecodeString(k.Y)
		if err != nil || len(x) != 32 || len(y) != 32 {
			return verifyKey{}, errors.New("not a P-256 point")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return verifyKey{}, err
		}
		return verifyKey{jwt.SigningMethodES256, pub}, nil
	}
	return verifyKey{}, fmt.Errorf("unsupported key type %s %s", k.KeyType, k.Curve)
}

// Verify checks an assertion meant for botID and returns its claims. The error wraps
// one of ErrMalformed, ErrAlgorithm, ErrUnknownKey, ErrSignature, ErrExpired,
// ErrNotYetValid, ErrAudience or ErrIssuer.
//
// botID is required: the assertion's `aud` must equal it, so that an assertion issued
// for one bot cannot identify a visitor to another. An empty botID refuses every
// assertion with ErrAudience.
func (v *Verifier) Verify(token, botID string) (*Claims, error) {
	if botID == "" {
		return nil, fmt.Errorf("%w: no bot id to check the audience against", ErrAudience)
	}
	claims := new(Claims)
	parser := jwt.NewParser(
		jwt.WithValidMethods(v.algs),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(botID),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
	)
	parsed, err := parser.ParseWithClaims(token, claims, v.keyFor)
	if err != nil {
		return nil, v.refusal(parsed, err)
	}
	if err := checkStrict(parsed); err != nil {
		return nil, err
	}
	return claims, nil
}

// refusal turns golang-jwt's error into ours.
func (v *Verifier) refusal(parsed *jwt.Token, err error) error {
	if parsed != nil && parsed.Method != nil && !slices.Contains(v.algs, parsed.Method.Alg()) {
		return fmt.Errorf("%w: %q", ErrAlgorithm, parsed.Method.Alg())
	}
	for _, known := range []error{ErrAlgorithm, ErrUnknownKey} {
		if errors.Is(err, known) {
			return known
		}
	}
	for _, m := range []struct{ jwtErr, ours error }{
		{jwt.ErrTokenMalformed, ErrMalformed},
		{jwt.ErrTokenSignatureInvalid, ErrSignature},
		{jwt.ErrTokenExpired, ErrExpired},
		{jwt.ErrTokenNotValidYet, ErrNotYetValid},
		{jwt.ErrTokenUsedBeforeIssued, ErrNotYetValid},
		{jwt.ErrTokenInvalidAudience, ErrAudience},
		{jwt.ErrTokenInvalidIssuer, ErrIssuer},
		{jwt.ErrTokenUnverifiable, ErrAlgorithm}, // an alg golang-jwt does not know
	} {
		if errors.Is(err, m.jwtErr) {
			return fmt.Errorf("%w: %v", m.ours, err)
		}
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// checkStrict refuses what golang-jwt lets through in a token it verified: a `crit`
// header, which names extensions the token requires and we understand none of (RFC
// 7515 §4.1.11), and an ES256 signature with a high s, the malleable twin of a valid
// one.
func checkStrict(parsed *jwt.Token) error {
	if crit, ok := parsed.Header["crit"]; ok {
		return fmt.Errorf("%w: crit %v: no JWS extension is supported", ErrMalformed, crit)
	}
	if parsed.Method.Alg() == jwt.SigningMethodES256.Alg() && isHighS(parsed.Signature) {
		return fmt.Errorf("%w: ES256 signature with a high s", ErrSignature)
	}
	return nil
}

// keyFor picks the key by the token's kid and refuses any algorithm but that key's.
func (v *Verifier) keyFor(token *jwt.Token) (any, error) {
	kid, _ := token.Header["kid"].(string)
	key, ok := v.keys[kid]
	if !ok && len(v.keys) == 1 {
		for _, only := range v.keys {
			key, ok = only, true
		}
	}
	if !ok {
		return nil, ErrUnknownKey
	}
	if token.Method == nil || token.Method.Alg() != key.method.Alg() {
		return nil, ErrAlgorithm
	}
	return key.key, nil
}

// AssertionHeader is the header name of the assertion for a prefix.
func AssertionHeader(prefix string) string { return HeaderName(prefix, "assertion") }

type contextKey struct{}

// FromContext returns the contact that Middleware verified, if any.
func FromContext(ctx context.Context) (*Contact, bool) {
	c, ok := ctx.Value(contextKey{}).(*Contact)
	return c, ok
}

// NewContext returns a context that carries c, as Middleware does.
func NewContext(ctx context.Context, c *Contact) context.Context {
	return context.WithValue(ctx, contextKey{}, c)
}

// Middleware verifies the assertion of each request and, when it is valid, puts the
// signed contact in the request's context (see FromContext). botID tells which bot a
// request is for (the widget's X-Bot-Id, for example); the assertion's `aud` must be
// that bot.
//
// The request's contact headers are replaced by what the assertion signs: those of a
// valid assertion's contact, or none at all, so that code behind the middleware that
// reads the headers (FromHeaders) never sees unsigned ones. A request without a valid
// assertion goes on anonymous.
func Middleware(v *Verifier, prefix string, botID func(*http.Request) string) func(http.Handler) http.Handler {
	header := AssertionHeader(prefix)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token := r.Header.Get(header)
			StripHeaders(r.Header, prefix)
			if c, data, idb, ok := verifiedContact(v, token, botID(r)); ok {
				SetHeaders(r.Header, prefix, data, idb)
				r.Header.Set(header, token)
				r = r.WithContext(NewContext(r.Context(), c))
			}
			next.ServeHTTP(w, r)
		})
	}
}

func verifiedContact(v *Verifier, token, botID string) (*Contact, Data, string, bool) {
	if token == "" {
		return nil, nil, "", false
	}
	claims, err := v.Verify(token, botID)
	if err != nil {
		return nil, nil, "", false
	}
	var data Data
	if err := json.Unmarshal(claims.Data, &data); err != nil {
		return nil, nil, "", false
	}
	c, err := data.Contact(claims.IdentifyBy)
	if err != nil {
		return nil, nil, "", false
	}
	return c, data, claims.IdentifyBy, true
}

// HeadersMiddleware puts the contact of the headers (FromHeaders) in the request's
// context, without any signature. Use it only where nothing but the gateway can reach
// the backend; otherwise use Middleware.
func HeadersMiddleware(prefix string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, err := FromHeaders(r.Header, prefix); err == nil {
				r = r.WithContext(NewContext(r.Context(), c))
			}
			next.ServeHTTP(w, r)
		})
	}
}
