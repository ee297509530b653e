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
	ErrAudience   = errors.New("contact: assertion is for another bot")
	ErrIssuer     = errors.New("contact: assertion not issued by custom_auth")
)

// DefaultLeeway is the clock skew tolerated between the gateway and the backend.
const DefaultLeeway = 5 * time.Second

// Verifier checks assertions. Its algorithms come from its keys, never from the token,
// so `alg: none` and HS256 tokens made with a public key are refused.
type Verifier struct {
	keys   map[string]verifyKey // by kid; "" for the only key of an HMAC verifier
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
	for _, opt := range opts {
		opt(v)
	}
	return v
}

func (k JWK) publicKey() (verifyKey, error) {
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
// ErrAudience or ErrIssuer.
func (v *Verifier) Verify(token, botID string) (*Claims, error) {
	claims := new(Claims)
	parser := jwt.NewParser(
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(botID),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
	)
	_, err := parser.ParseWithClaims(token, claims, v.keyFor)
	if err == nil {
		return claims, nil
	}
	for _, known := range []error{ErrAlgorithm, ErrUnknownKey} {
		if errors.Is(err, known) {
			return nil, known
		}
	}
	for _, m := range []struct{ jwtErr, ours error }{
		{jwt.ErrTokenMalformed, ErrMalformed},
		{jwt.ErrTokenSignatureInvalid, ErrSignature},
		{jwt.ErrTokenExpired, ErrExpired},
		{jwt.ErrTokenInvalidAudience, ErrAudience},
		{jwt.ErrTokenInvalidIssuer, ErrIssuer},
		{jwt.ErrTokenUnverifiable, ErrAlgorithm}, // an alg golang-jwt does not know
	} {
		if errors.Is(err, m.jwtErr) {
			return nil, fmt.Errorf("%w: %v", m.ours, err)
		}
	}
	return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
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
// request is for (the widget's X-Bot-Id, for example); the assertion must be for that
// bot. A request without a valid assertion goes on anonymous: its X-Contact-* headers
// are not trusted.
func Middleware(v *Verifier, prefix string, botID func(*http.Request) string) func(http.Handler) http.Handler {
	header := AssertionHeader(prefix)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if token := r.Header.Get(header); token != "" {
				if claims, err := v.Verify(token, botID(r)); err == nil {
					if c, err := claims.Contact(); err == nil {
						r = r.WithContext(NewContext(r.Context(), c))
					}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
