package customauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/custom-auth/custom_auth/contact"
)

// testJWTSecret is the HS256 secret bots of these tests share with the "customer".
const testJWTSecret = "the-customer's-shared-secret-0123456789"

// signingKey is a key the customer signs visitors' tokens with.
type signingKey struct {
	kid    string
	method jwt.SigningMethod
	key    any    // what golang-jwt signs with
	jwk    string // the public key as a JWKS lists it
}

var hmacKey = signingKey{method: jwt.SigningMethodHS256, key: []byte(testJWTSecret)}

// rsaTestKey is generated once: RSA key generation is slow.
var rsaTestKey = sync.OnceValue(func() *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return key
})

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func newRSAKey(kid string) signingKey {
	key := rsaTestKey()
	return signingKey{kid: kid, method: jwt.SigningMethodRS256, key: key, jwk: fmt.Sprintf(
		`{"kty":"RSA","kid":%q,"use":"sig","alg":"RS256","n":%q,"e":%q}`,
		kid, b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))}
}

func newES256Key(kid string) signingKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	point, _ := key.PublicKey.Bytes() // 0x04 || x || y
	return signingKey{kid: kid, method: jwt.SigningMethodES256, key: key, jwk: fmt.Sprintf(
		`{"kty":"EC","kid":%q,"crv":"P-256","x":%q,"y":%q}`, kid, b64(point[1:33]), b64(point[33:]))}
}

func newEdDSAKey(kid string) signingKey {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return signingKey{kid: kid, method: jwt.SigningMethodEdDSA, key: key, jwk: fmt.Sprintf(
		`{"kty":"OKP","kid":%q,"crv":"Ed25519","x":%q}`, kid, b64(pub))}
}

// sign makes a token with the key's algorithm and kid.
func (k signingKey) sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	token := jwt.NewWithClaims(k.method, claims)
	if k.kid != "" {
		token.Header["kid"] = k.kid
	}
	signed, err := token.SignedString(k.key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// claimsFor are the claims of a good token for a bot at a time, with changes: a nil
// value removes a claim.
func claimsFor(aud string, now time.Time, changes jwt.MapClaims) jwt.MapClaims {
	claims := jwt.MapClaims{"sub": "2", "aud": aud, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	for name, value := range changes {
		if value == nil {
			delete(claims, name)
		} else {
			claims[name] = value
		}
	}
	return claims
}

// jwtHandler provisions a handler with the given bots, its own cache and a clock the
// test moves.
func jwtHandler(t testing.TB, clk *clock, bots map[string]*Bot) *Handler {
	return provision(t, &Handler{Bots: bots, now: clk.Now})
}

// noCache turns off caching of a bot's verdicts, so that every request verifies.
func noCache(b *Bot) *Bot {
	b.CacheTTL, b.NegativeTTL = dur(0), dur(0)
	return b
}

// identifyToken runs the flow for one visitor of a bot.
func identifyToken(h *Handler, bot, token string, fields ...fieldValue) outcome {
	return h.identify(context.Background(), visit{botID: bot, token: token, fields: fields})
}

func outcomeText(out outcome) string { return out.status.String() + "/" + string(out.reason) }

// identityDetail is what `caddy custom-auth test` prints for the identity step.
func identityDetail(bot, token string, out outcome) string {
	steps := traceSteps(visit{botID: bot, token: token}, out)
	return steps[len(steps)-1].Detail
}

// TestVerifyJWTRefusals: a token that fails any check is rejected, and the CLI's
// identity step says which check failed.
func TestVerifyJWTRefusals(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	rsaKey := newRSAKey("rsa-1")
	jwks := newJWKSServer(t, rsaKey)
	h := jwtHandler(t, clk, map[string]*Bot{
		"shop":  noCache(&Bot{VerifyJWT: &JWTSettings{Secret: testJWTSecret, Issuer: "https://shop.example.com"}}),
		"keyed": noCache(&Bot{VerifyJWT: &JWTSettings{JWKSURL: jwks.URL, Audience: "chat"}}),
	})
	good := claimsFor("shop", now, jwt.MapClaims{"iss": "https://shop.example.com"})
	with := func(changes jwt.MapClaims) jwt.MapClaims {
		c := maps.Clone(good)
		maps.Copy(c, changes)
		maps.DeleteFunc(c, func(_ string, v any) bool { return v == nil })
		return c
	}
	unsigned, err := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	publicPEM, err := x509.MarshalPKIXPublicKey(&rsaTestKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	// Key confusion: an HS256 token whose "secret" is the bot's public RSA key.
	confused := signingKey{kid: "rsa-1", method: jwt.SigningMethodHS256,
		key: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicPEM})}
	otherSecret := signingKey{method: jwt.SigningMethodHS256, key: []byte(strings.Repeat("x", 40))}
	hs384 := signingKey{method: jwt.SigningMethodHS384, key: []byte(testJWTSecret)}
	crit := jwt.NewWithClaims(jwt.SigningMethodHS256, good)
	crit.Header["crit"] = []string{"exp"}
	critical, _ := crit.SignedString([]byte(testJWTSecret))

	for _, tc := range []struct {
		name, bot, token, want string
	}{
		{"alg none", "shop", unsigned, "signing method none is invalid"},
		{"an HS256 token signed with the bot's RSA public key", "keyed", confused.sign(t, claimsFor("chat", now, nil)), "signing method HS256 is invalid"},
		{"an HS384 token with the right secret", "shop", hs384.sign(t, good), "signing method HS384 is invalid"},
		{"wrong secret", "shop", otherSecret.sign(t, good), "token signature is invalid"},
		{"wrong RSA key", "keyed", signingKey{kid: "rsa-1", method: jwt.SigningMethodRS256, key: mustRSAKey(t)}.sign(t, claimsFor("chat", now, nil)), "token signature is invalid"},
		{"expired", "shop", hmacKey.sign(t, with(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()})), "token is expired"},
		{"no exp", "shop", hmacKey.sign(t, with(jwt.MapClaims{"exp": nil})), "exp claim is required"},
		{"future nbf", "shop", hmacKey.sign(t, with(jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()})), "token is not valid yet"},
		{"future iat", "shop", hmacKey.sign(t, with(jwt.MapClaims{"iat": now.Add(time.Minute).Unix()})), "token used before issued"},
		{"wrong iss", "shop", hmacKey.sign(t, with(jwt.MapClaims{"iss": "https://evil.example"})), "token has invalid issuer"},
		{"no iss", "shop", hmacKey.sign(t, with(jwt.MapClaims{"iss": nil})), "iss claim is required"},
		{"wrong aud", "shop", hmacKey.sign(t, with(jwt.MapClaims{"aud": "another-bot"})), "token has invalid audience"},
		{"no aud", "shop", hmacKey.sign(t, with(jwt.MapClaims{"aud": nil})), "aud claim is required"},
		{"aud is the bot id where audience is set", "keyed", rsaKey.sign(t, claimsFor("keyed", now, nil)), "token has invalid audience"},
		{"unparsable", "shop", "not-a-jwt", "token is malformed"},
		{"no alg", "shop", "e30.e30.AAAA", "signing method (alg) is unspecified"},
		{"crit header", "shop", critical, "crit header"},
		{"RS256 with an unknown kid", "keyed", signingKey{kid: "rsa-9", method: jwt.SigningMethodRS256, key: rsaTestKey()}.sign(t, claimsFor("chat", now, nil)), `no key "rsa-9" in the JWKS`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := identifyToken(h, tc.bot, tc.token)
			if got := outcomeText(out); got != "fallback/rejected" {
				t.Fatalf("outcome %s (%v), want fallback/rejected", got, out.err)
			}
			if detail := identityDetail(tc.bot, tc.token, out); !strings.Contains(detail, tc.want) {
				t.Errorf("identity step: %q, want it to say %q", detail, tc.want)
			}
		})
	}

	// The two good tokens, for contrast.
	for bot, token := range map[string]string{"shop": hmacKey.sign(t, good), "keyed": rsaKey.sign(t, claimsFor("chat", now, nil))} {
		if out := identifyToken(h, bot, token); outcomeText(out) != "verified/" {
			t.Errorf("%s: good token: %s (%v)", bot, outcomeText(out), out.err)
		}
	}
}

func mustRSAKey(t testing.TB) *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// TestVerifyJWTLeeway: a few seconds of clock skew are tolerated, no more.
func TestVerifyJWTLeeway(t *testing.T) {
	clk := newClock()
	h := jwtHandler(t, clk, map[string]*Bot{"shop": noCache(&Bot{VerifyJWT: &JWTSettings{Secret: testJWTSecret}})})
	token := hmacKey.sign(t, claimsFor("shop", clk.Now(), jwt.MapClaims{"exp": clk.Now().Unix()}))
	clk.advance(tokenLeeway - time.Second)
	if out := identifyToken(h, "shop", token); outcomeText(out) != "verified/" {
		t.Errorf("within the leeway: %s (%v)", outcomeText(out), out.err)
	}
	clk.advance(2 * time.Second)
	if out := identifyToken(h, "shop", token); outcomeText(out) != "fallback/rejected" {
		t.Errorf("past the leeway: %s", outcomeText(out))
	}
}

// TestVerifyJWTClaimMapping: the contact comes from the claims, and the rest of the
// flow is as with an identity API.
func TestVerifyJWTClaimMapping(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	h := provision(t, &Handler{now: clk.Now, SignKey: testSignKey, Bots: map[string]*Bot{
		"shop":      {VerifyJWT: &JWTSettings{Secret: testJWTSecret}},
		"by-email":  {VerifyJWT: &JWTSettings{Secret: testJWTSecret}, IdentifyBy: "email"},
		"whitelist": {VerifyJWT: &JWTSettings{Secret: testJWTSecret}, Whitelist: []string{"shop.example.com"}},
	}})
	full := jwt.MapClaims{
		"sub": "auth0|42", "external_id": "2", "name": "Nguyễn Văn B", "email": "B@Example.com",
		"phone_number": "0912345678", "country_code": "+84", "avatar": "https://cdn.example.com/b.png",
		"label": "VIP", "metadata": map[string]any{"order_id": "ORD-5578XZ", "order_quantity": 3},
		"roles": []string{"admin"}, // not a contact field
	}

	got := serve(t, h, widgetRequest("shop", hmacKey.sign(t, claimsFor("shop", now, full)), "", "X-User-Id", "2"))
	if s := got.placeholder("http.custom_auth.status"); s != "verified" {
		t.Fatalf("status %s (%s)", s, got.placeholder("http.custom_auth.reason"))
	}
	c, err := contact.FromHeaders(got.header, contact.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "2" || c.Name != "Nguyễn Văn B" || c.Email != "B@Example.com" || c.PhoneNumber != "0912345678" ||
		c.CountryCode != "+84" || c.Avatar != "https://cdn.example.com/b.png" || c.Label != "VIP" ||
		c.Metadata["order_id"] != "ORD-5578XZ" || c.Metadata["order_quantity"] != 3.0 {
		t.Errorf("contact from external_id over sub = %+v", c)
	}
	if v := got.placeholder("http.custom_auth.contact.metadata.order_id"); v != "ORD-5578XZ" {
		t.Errorf("metadata placeholder = %q", v)
	}
	verifier, _ := contact.NewHMACVerifier([]byte(testSignKey), contact.WithClock(clk.Now))
	claims, err := verifier.Verify(got.header.Get("X-Contact-Assertion"), "shop")
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	if claims.Subject != "2" || strings.Contains(string(claims.Data), "roles") || strings.Contains(string(claims.Data), "auth0") {
		t.Errorf("assertion subject %q, contact %s", claims.Subject, claims.Data)
	}

	for _, tc := range []struct {
		name, bot string
		claims    jwt.MapClaims
		fields    []fieldValue
		want      string // outcome
		id, email string // when verified
	}{
		{"sub without external_id", "shop", jwt.MapClaims{"sub": "auth0|42"}, nil, "verified/", "auth0|42", ""},
		{"a numeric external_id", "shop", jwt.MapClaims{"external_id": 42}, nil, "verified/", "42", ""},
		{"null external_id: sub", "shop", jwt.MapClaims{"external_id": nil, "sub": "7"}, nil, "verified/", "7", ""},
		{"email_verified false drops email", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": false}, nil, "verified/", "2", ""},
		{"email_verified true keeps it", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": true}, nil, "verified/", "2", "b@example.com"},
		{"no email_verified keeps it", "shop", jwt.MapClaims{"email": "b@example.com"}, nil, "verified/", "2", "b@example.com"},
		{"null email_verified keeps it", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": nil}, nil, "verified/", "2", "b@example.com"},
		{"email_verified \"false\" drops email", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": "false"}, nil, "verified/", "2", ""},
		{"email_verified \"true\" drops email", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": "true"}, nil, "verified/", "2", ""},
		{"email_verified 0 drops email", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": 0}, nil, "verified/", "2", ""},
		{"email_verified 1 drops email", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": 1}, nil, "verified/", "2", ""},
		{"email_verified {} drops email", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": map[string]any{}}, nil, "verified/", "2", ""},
		{"email_verified [true] drops email", "shop", jwt.MapClaims{"email": "b@example.com", "email_verified": []bool{true}}, nil, "verified/", "2", ""},
		{"identify_by email, email_verified \"false\"", "by-email", jwt.MapClaims{"email": "b@example.com", "email_verified": "false"}, nil, "fallback/error", "", ""},
		{"no id at all", "shop", jwt.MapClaims{"sub": nil}, nil, "fallback/error", "", ""},
		{"the visitor claims another id", "shop", nil, []fieldValue{{"user_id", "3"}}, "fallback/identity_mismatch", "", ""},
		{"identify_by email, the same email in another case", "by-email", jwt.MapClaims{"email": "B@Example.com"}, []fieldValue{{"email", "b@example.com"}}, "verified/", "2", "B@Example.com"},
		{"identify_by email, unverified email", "by-email", jwt.MapClaims{"email": "b@example.com", "email_verified": false}, nil, "fallback/error", "", ""},
		{"identify_by email, another email claimed", "by-email", jwt.MapClaims{"email": "b@example.com"}, []fieldValue{{"email", "c@example.com"}}, "fallback/identity_mismatch", "", ""},
		{"a contact too large for headers", "shop", jwt.MapClaims{"name": strings.Repeat("n", maxContactSize)}, nil, "fallback/error", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := hmacKey.sign(t, claimsFor(tc.bot, now, tc.claims))
			out := identifyToken(h, tc.bot, token, tc.fields...)
			if got := outcomeText(out); got != tc.want {
				t.Fatalf("outcome %s (%v), want %s", got, out.err, tc.want)
			}
			if out.status != statusVerified {
				return
			}
			data := out.identity.fields()
			id, _ := data.Text("id")
			email, hasEmail := data.Text("email")
			if id != tc.id || email != tc.email || (tc.email == "") == hasEmail {
				t.Errorf("id %q, email %q (%v); want %q, %q", id, email, hasEmail, tc.id, tc.email)
			}
		})
	}

	// The whitelist comes first, as with an identity API.
	token := hmacKey.sign(t, claimsFor("whitelist", now, nil))
	for origin, want := range map[string]string{"https://shop.example.com": "", "https://evil.example": "domain_not_allowed"} {
		if r := serve(t, h, widgetRequest("whitelist", token, origin)).placeholder("http.custom_auth.reason"); r != want {
			t.Errorf("origin %s: reason %q, want %q", origin, r, want)
		}
	}
}

// TestVerifyJWTJWKS: RS256, ES256 and EdDSA keys from a JWKS fetched on first need,
// each verifying only its own algorithm.
func TestVerifyJWTJWKS(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	rsaKey, ecKey, edKey := newRSAKey("rsa-1"), newES256Key("ec-1"), newEdDSAKey("ed-1")
	jwks := newJWKSServer(t, rsaKey, ecKey, edKey)
	h := jwtHandler(t, clk, map[string]*Bot{"shop": noCache(&Bot{VerifyJWT: &JWTSettings{JWKSURL: jwks.URL + "/.well-known/jwks.json"}})})
	if n := jwks.calls.Load(); n != 0 {
		t.Fatalf("the JWKS was fetched %d times before any token", n)
	}
	for _, key := range []signingKey{rsaKey, ecKey, edKey} {
		if out := identifyToken(h, "shop", key.sign(t, claimsFor("shop", now, nil))); outcomeText(out) != "verified/" {
			t.Errorf("%s: %s (%v)", key.method.Alg(), outcomeText(out), out.err)
		}
		noKID := key
		noKID.kid = ""
		if out := identifyToken(h, "shop", noKID.sign(t, claimsFor("shop", now, nil))); outcomeText(out) != "verified/" {
			t.Errorf("%s without a kid: %s (%v)", key.method.Alg(), outcomeText(out), out.err)
		}
	}
	if n := jwks.calls.Load(); n != 1 {
		t.Errorf("the JWKS was fetched %d times, want 1", n)
	}

	// A key verifies only its own algorithm: an ES256 token that names the Ed25519
	// key's kid is refused whatever it is signed with.
	ecNamedEd := ecKey
	ecNamedEd.kid = "ed-1"
	out := identifyToken(h, "shop", ecNamedEd.sign(t, claimsFor("shop", now, nil)))
	if outcomeText(out) != "fallback/rejected" || !strings.Contains(out.err.Error(), `key "ed-1" verifies EdDSA, not ES256`) {
		t.Errorf("ES256 token naming an EdDSA key: %s (%v)", outcomeText(out), out.err)
	}
}

// TestVerifyJWTKeyRotation: a new kid makes one fetch at once, at most once a minute;
// the old key verifies until the JWKS drops it.
func TestVerifyJWTKeyRotation(t *testing.T) {
	clk := newClock()
	oldKey, newKey, lateKey := newES256Key("2026-01"), newEdDSAKey("2026-02"), newES256Key("2026-03")
	jwks := newJWKSServer(t, oldKey)
	h := jwtHandler(t, clk, map[string]*Bot{"shop": noCache(&Bot{VerifyJWT: &JWTSettings{JWKSURL: jwks.URL}})})
	check := func(key signingKey, want string) {
		t.Helper()
		if out := identifyToken(h, "shop", key.sign(t, claimsFor("shop", clk.Now(), nil))); outcomeText(out) != want {
			t.Errorf("%s: %s (%v), want %s", key.kid, outcomeText(out), out.err, want)
		}
	}
	check(oldKey, "verified/")

	jwks.publish(oldKey, newKey)
	check(newKey, "verified/") // an unknown kid: fetched again at once
	check(oldKey, "verified/")
	if n := jwks.calls.Load(); n != 2 {
		t.Fatalf("JWKS fetches = %d, want 2", n)
	}

	// Made-up kids make no more fetches within the minute.
	jwks.publish(newKey, lateKey)
	for i := range 5 {
		check(signingKey{kid: fmt.Sprint("made-up-", i), method: jwt.SigningMethodEdDSA, key: newKey.key}, "fallback/rejected")
	}
	check(lateKey, "fallback/rejected")
	check(oldKey, "verified/") // dropped from the JWKS, but not fetched again yet
	if n := jwks.calls.Load(); n != 2 {
		t.Fatalf("JWKS fetches within the minute = %d, want 2", n)
	}

	clk.advance(unknownKeyRefetch)
	check(lateKey, "verified/")
	check(oldKey, "fallback/rejected")
	check(newKey, "verified/")
	if n := jwks.calls.Load(); n != 3 {
		t.Errorf("JWKS fetches = %d, want 3", n)
	}
}

// TestVerifyJWTKeysUnavailable: keys never fetched are an error; once the JWKS is
// back, tokens verify again; keys once fetched keep serving while it is down.
func TestVerifyJWTKeysUnavailable(t *testing.T) {
	clk := newClock()
	key := newEdDSAKey("ed-1")
	jwks := newJWKSServer(t, key)
	jwks.setDown(true)
	logs, logged := observer.New(zap.WarnLevel)
	h := provision(t, &Handler{now: clk.Now, logger: zap.New(logs),
		Bots: map[string]*Bot{"shop": noCache(&Bot{VerifyJWT: &JWTSettings{JWKSURL: jwks.URL}})}})
	token := func() string { return key.sign(t, claimsFor("shop", clk.Now(), nil)) }

	out := identifyToken(h, "shop", token())
	if outcomeText(out) != "fallback/error" || !strings.Contains(out.err.Error(), "jwks_url answered 503") {
		t.Fatalf("JWKS down, never fetched: %s (%v)", outcomeText(out), out.err)
	}
	if logged.FilterMessage("fetching the JWKS failed; keeping the keys at hand").Len() != 1 {
		t.Errorf("warnings: %v", logged.All())
	}
	// Not asked again by every visitor: errors are not cached, the fetch is held back.
	for range 3 {
		if out := identifyToken(h, "shop", token()); outcomeText(out) != "fallback/error" {
			t.Fatalf("held back: %s", outcomeText(out))
		}
	}
	if n := jwks.calls.Load(); n != 1 {
		t.Fatalf("JWKS fetches while held back = %d, want 1", n)
	}

	jwks.setDown(false)
	clk.advance(holdBackAfterFailure)
	if out := identifyToken(h, "shop", token()); outcomeText(out) != "verified/" {
		t.Fatalf("JWKS back: %s (%v)", outcomeText(out), out.err)
	}

	// Down again: the keys at hand keep serving, and the background refresh that an
	// old set starts fails without harm.
	jwks.setDown(true)
	clk.advance(jwksRefresh)
	calls := jwks.calls.Load()
	if out := identifyToken(h, "shop", token()); outcomeText(out) != "verified/" {
		t.Fatalf("JWKS down after a fetch: %s (%v)", outcomeText(out), out.err)
	}
	keys := h.bots["shop"].jwt.jwks
	eventually(t, "the failed background refresh", func() bool { return jwks.calls.Load() == calls+1 && keys.keys.refreshesUnderWay() == 0 })
	if out := identifyToken(h, "shop", token()); outcomeText(out) != "verified/" {
		t.Fatalf("after a failed refresh: %s (%v)", outcomeText(out), out.err)
	}
	// A new kid while the JWKS is down cannot be had: an error, not a rejection.
	newKey := newEdDSAKey("ed-2")
	if out := identifyToken(h, "shop", newKey.sign(t, claimsFor("shop", clk.Now(), nil))); outcomeText(out) != "fallback/error" {
		t.Errorf("unknown kid, JWKS down: %s (%v)", outcomeText(out), out.err)
	}

	// Back, with a new key: the next refresh takes it.
	jwks.publish(newKey)
	jwks.setDown(false)
	clk.advance(holdBackAfterFailure)
	calls = jwks.calls.Load()
	identifyToken(h, "shop", token()) // starts the refresh
	eventually(t, "the background refresh", func() bool { return jwks.calls.Load() == calls+1 && keys.keys.refreshesUnderWay() == 0 })
	if out := identifyToken(h, "shop", newKey.sign(t, claimsFor("shop", clk.Now(), nil))); outcomeText(out) != "verified/" {
		t.Errorf("key from the background refresh: %s (%v)", outcomeText(out), out.err)
	}
	if out := identifyToken(h, "shop", token()); outcomeText(out) != "fallback/rejected" {
		t.Errorf("key dropped by the background refresh: %s (%v)", outcomeText(out), out.err)
	}
}

// TestVerifyJWTConcurrentFirstTokens: tokens that come together before the keys are
// fetched wait for one fetch.
func TestVerifyJWTConcurrentFirstTokens(t *testing.T) {
	clk := newClock()
	key := newES256Key("ec-1")
	jwks := newJWKSServer(t, key)
	h := jwtHandler(t, clk, map[string]*Bot{"shop": noCache(&Bot{VerifyJWT: &JWTSettings{JWKSURL: jwks.URL}})})
	var wg sync.WaitGroup
	for i := range 50 {
		token := key.sign(t, claimsFor("shop", clk.Now(), jwt.MapClaims{"sub": fmt.Sprint(i)}))
		wg.Go(func() {
			if out := identifyToken(h, "shop", token); outcomeText(out) != "verified/" {
				t.Errorf("%s (%v)", outcomeText(out), out.err)
			}
		})
	}
	wg.Wait()
	if n := jwks.calls.Load(); n != 1 {
		t.Errorf("50 concurrent first tokens made %d fetches, want 1", n)
	}
}

// TestVerifyJWTCacheBoundByExp: a verified token is served from the cache, but never
// after its exp.
func TestVerifyJWTCacheBoundByExp(t *testing.T) {
	clk := newClock()
	h := jwtHandler(t, clk, map[string]*Bot{"shop": {VerifyJWT: &JWTSettings{Secret: testJWTSecret}}})
	token := hmacKey.sign(t, claimsFor("shop", clk.Now(), jwt.MapClaims{"exp": clk.Now().Add(30 * time.Second).Unix()}))
	identifyToken(h, "shop", token)
	clk.advance(29 * time.Second)
	if out := identifyToken(h, "shop", token); outcomeText(out) != "verified/" || !out.cacheHit {
		t.Errorf("before exp: %s, cache hit %v", outcomeText(out), out.cacheHit)
	}
	clk.advance(time.Second)
	out := identifyToken(h, "shop", token)
	if out.cacheHit || outcomeText(out) != "verified/" { // checked again: within the leeway
		t.Errorf("at exp: %s, cache hit %v", outcomeText(out), out.cacheHit)
	}
	clk.advance(tokenLeeway)
	if out := identifyToken(h, "shop", token); outcomeText(out) != "fallback/rejected" {
		t.Errorf("past exp: %s", outcomeText(out))
	}
}

// TestVerifyJWTSettingsKey: a cached verdict is never served to a bot whose verify_jwt
// changed.
func TestVerifyJWTSettingsKey(t *testing.T) {
	env := &environment{ctx: context.Background(), now: time.Now, logger: zap.NewNop(), metrics: newProcessMetrics()}
	policy := &botPolicy{expand: func(s string) string { return s }, client: http.DefaultClient}
	key := func(s JWTSettings) [32]byte {
		t.Helper()
		b, err := newBot("shop", &Bot{VerifyJWT: &s}, nil, policy, env)
		if err != nil {
			t.Fatal(err)
		}
		return b.settingsKey
	}
	base := JWTSettings{Secret: testJWTSecret}
	seen := map[[32]byte]string{key(base): "base"}
	for name, s := range map[string]JWTSettings{
		"secret":   {Secret: testJWTSecret + "!"},
		"jwks_url": {JWKSURL: "https://keys.example.com/jwks"},
		"issuer":   {Secret: testJWTSecret, Issuer: "https://shop.example.com"},
		"audience": {Secret: testJWTSecret, Audience: "chat"},
	} {
		k := key(s)
		if other, dup := seen[k]; dup {
			t.Errorf("changing %s leaves the settings key of %s", name, other)
		}
		seen[k] = name
	}
	if key(base) != key(JWTSettings{Secret: testJWTSecret, Audience: "shop"}) {
		t.Error("the default audience differs from the same audience written out")
	}
}

// TestVerifyJWTConfig: config errors name the option, in the Caddyfile with its file
// and line, and in the JSON config.
func TestVerifyJWTConfig(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`custom_auth {
		bot shop {
			verify_jwt {
				jwks_url https://shop.example.com/.well-known/jwks.json
				issuer https://shop.example.com
				audience chat-widget
			}
			identify_by email
		}
		bot * {
			verify_jwt {
				secret {env.CA_JWT_SECRET}
				audience chat
			}
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h.Bots)
	want := `{"*":{"verify_jwt":{"secret":"{env.CA_JWT_SECRET}","audience":"chat"}},` +
		`"shop":{"verify_jwt":{"jwks_url":"https://shop.example.com/.well-known/jwks.json","issuer":"https://shop.example.com","audience":"chat-widget"},"identify_by":"email"}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	for _, tc := range []struct {
		name, input, wantErr string
	}{
		{"neither", "bot b {\nverify_jwt {\nissuer x\n}\n}", `bot "b": verify_jwt: secret or jwks_url is required, at Testfile:6`},
		{"both", "bot b {\nverify_jwt {\nsecret " + testJWTSecret + "\njwks_url https://a.example/jwks\n}\n}", `verify_jwt: secret and jwks_url exclude each other`},
		{"with auth_url", "bot b {\nauth_url https://a.example/ca\nverify_jwt {\nsecret " + testJWTSecret + "\n}\n}", `verify_jwt: a bot has auth_url or verify_jwt, not both`},
		{"with auth_header", "bot b {\nauth_header X-Key k\nverify_jwt {\nsecret " + testJWTSecret + "\n}\n}", `auth_header: only for auth_url`},
		{"with forward", "bot b {\nforward email\nverify_jwt {\nsecret " + testJWTSecret + "\n}\n}", `forward: only for auth_url`},
		{"short secret", "bot b {\nverify_jwt {\nsecret short\n}\n}", `verify_jwt: secret: an HS256 secret must be at least 32 bytes, not 5, at Testfile:4`},
		{"bad jwks_url", "bot b {\nverify_jwt {\njwks_url keys.example.com\n}\n}", `jwks_url: "keys.example.com" must be an absolute http or https URL, at Testfile:4`},
		{"bot * without audience", "bot * {\nverify_jwt {\nsecret " + testJWTSecret + "\n}\n}", `verify_jwt: audience is required for bot *`},
		{"unknown subdirective", "bot b {\nverify_jwt {\nalgorithm HS256\n}\n}", `unrecognized verify_jwt subdirective 'algorithm'`},
		{"issuer twice", "bot b {\nverify_jwt {\nsecret " + testJWTSecret + "\nissuer a\nissuer b\n}\n}", `issuer: given twice`},
		{"argument", "bot b {\nverify_jwt hs256 {\nsecret " + testJWTSecret + "\n}\n}", `wrong argument count`},
	} {
		t.Run("Caddyfile "+tc.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("custom_auth {\n" + tc.input + "\n}"))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %v, want %q with file and line", err, tc.wantErr)
			}
		})
	}

	t.Setenv("CA_TEST_EMPTY", "")
	for _, tc := range []struct {
		name    string
		bot     string
		cfg     Bot
		wantErr string
	}{
		{"neither", "b", Bot{VerifyJWT: &JWTSettings{}}, `bot "b": verify_jwt: secret or jwks_url is required`},
		{"both", "b", Bot{VerifyJWT: &JWTSettings{Secret: testJWTSecret, JWKSURL: "https://a.example"}}, `bot "b": verify_jwt: secret and jwks_url exclude each other`},
		{"with auth_url", "b", Bot{AuthURL: "https://a.example", VerifyJWT: &JWTSettings{Secret: testJWTSecret}}, `bot "b": verify_jwt: a bot has auth_url or verify_jwt, not both`},
		{"short secret", "b", Bot{VerifyJWT: &JWTSettings{Secret: "short"}}, `bot "b": verify_jwt: secret: an HS256 secret must be at least 32 bytes`},
		{"secret expands to nothing", "b", Bot{VerifyJWT: &JWTSettings{Secret: "{env.CA_TEST_EMPTY}"}}, `bot "b": verify_jwt: secret: "{env.CA_TEST_EMPTY}" expands to an empty value`},
		{"audience expands to nothing", "b", Bot{VerifyJWT: &JWTSettings{Secret: testJWTSecret, Audience: "{env.CA_TEST_EMPTY}"}}, `bot "b": verify_jwt: audience: "{env.CA_TEST_EMPTY}" expands to an empty value`},
		{"ftp jwks_url", "b", Bot{VerifyJWT: &JWTSettings{JWKSURL: "ftp://a.example/jwks"}}, `bot "b": verify_jwt: jwks_url: "ftp://a.example/jwks" must be an absolute http or https URL`},
		{"bot * without audience", "*", Bot{VerifyJWT: &JWTSettings{Secret: testJWTSecret}}, `bot "*": verify_jwt: audience is required for bot *`},
	} {
		t.Run("JSON "+tc.name, func(t *testing.T) {
			h := &Handler{Bots: map[string]*Bot{tc.bot: &tc.cfg}, logger: zap.NewNop()}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := h.Provision(ctx)
			h.Cleanup()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}

	// An operator's secret may come from the environment; a tenant's is literal.
	t.Setenv("CA_TEST_JWT_SECRET", testJWTSecret)
	listed := jwtHandler(t, newClock(), map[string]*Bot{"shop": {VerifyJWT: &JWTSettings{Secret: "{env.CA_TEST_JWT_SECRET}"}}})
	if got := string(listed.bots["shop"].jwt.secret); got != testJWTSecret {
		t.Errorf("listed bot's secret = %q", got)
	}
	tenant, err := newTenantPolicy(&BotsSource{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	remote, err := newBot("remote", &Bot{VerifyJWT: &JWTSettings{Secret: "{env.CA_TEST_JWT_SECRET}-and-more-bytes"}}, nil, tenant, listed.env)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(remote.jwt.secret); got != "{env.CA_TEST_JWT_SECRET}-and-more-bytes" {
		t.Errorf("remote bot's secret = %q, want it literal", got)
	}
}

// TestVerifyJWTRemoteBots: a bots_url answer with verify_jwt works like a listed bot,
// and an invalid one falls back with error and a warning that names the option.
func TestVerifyJWTRemoteBots(t *testing.T) {
	clk := newClock()
	key := newEdDSAKey("ed-1")
	jwks := newJWKSServer(t, key)
	bots := newBotsAPI(t)
	bots.set("secret", fmt.Sprintf(`{"verify_jwt":{"secret":%q}}`, testJWTSecret))
	bots.set("keyed", fmt.Sprintf(`{"verify_jwt":{"jwks_url":%q,"issuer":"https://shop.example.com"}}`, jwks.URL))
	bots.set("both", fmt.Sprintf(`{"verify_jwt":{"secret":%q,"jwks_url":%q}}`, testJWTSecret, jwks.URL))
	bots.set("short", `{"verify_jwt":{"secret":"short"}}`)
	logs, logged := observer.New(zap.WarnLevel)
	h := provision(t, &Handler{now: clk.Now, logger: zap.New(logs),
		BotsURL: &BotsSource{URL: bots.URL + "/bots/", AllowPrivate: true}})

	if o := outcomeText(identifyToken(h, "secret", hmacKey.sign(t, claimsFor("secret", clk.Now(), nil)))); o != "verified/" {
		t.Errorf("remote bot with a secret: %s", o)
	}
	keyed := key.sign(t, claimsFor("keyed", clk.Now(), jwt.MapClaims{"iss": "https://shop.example.com"}))
	if o := outcomeText(identifyToken(h, "keyed", keyed)); o != "verified/" {
		t.Errorf("remote bot with jwks_url: %s", o)
	}
	for bot, want := range map[string]string{"both": "verify_jwt: secret and jwks_url exclude each other", "short": "verify_jwt: secret: an HS256 secret must be at least 32 bytes"} {
		if o := outcomeText(identifyToken(h, bot, "any")); o != "fallback/error" {
			t.Errorf("%s: %s", bot, o)
		}
		found := false
		for _, entry := range logged.FilterField(zap.String("bot", bot)).All() {
			found = found || strings.Contains(fmt.Sprint(entry.ContextMap()["error"]), want)
		}
		if !found {
			t.Errorf("%s: no warning saying %q: %v", bot, want, logged.All())
		}
	}
}

// TestVerifyJWTCLIDetail: `caddy custom-auth test` shows how a verify_jwt bot verifies,
// and no identity API request.
func TestVerifyJWTCLIDetail(t *testing.T) {
	clk := newClock()
	jwks := newJWKSServer(t, newEdDSAKey("ed-1"))
	h := jwtHandler(t, clk, map[string]*Bot{
		"shop":  {VerifyJWT: &JWTSettings{Secret: testJWTSecret}},
		"keyed": {VerifyJWT: &JWTSettings{JWKSURL: strings.Replace(jwks.URL, "http://", "http://user:pass@", 1) + "/jwks?key=k"}},
	})
	token := hmacKey.sign(t, claimsFor("shop", clk.Now(), nil))
	steps := traceSteps(visit{botID: "shop", token: token}, identifyToken(h, "shop", token))
	if len(steps) != 3 || steps[0].Detail != "verify_jwt: HS256 with the configured secret" || steps[2].Detail != `id "2"` {
		t.Errorf("steps = %+v", steps)
	}
	steps = traceSteps(visit{botID: "keyed", token: token}, identifyToken(h, "keyed", token))
	if d := steps[0].Detail; !strings.HasPrefix(d, "verify_jwt: keys from http://REDACTED@127.0.0.1:") || !strings.HasSuffix(d, "/jwks?REDACTED") {
		t.Errorf("bot step = %q", d)
	}
	for _, s := range steps {
		if strings.Contains(s.Detail, testJWTSecret) || strings.Contains(s.Detail, "pass") || strings.Contains(s.Detail, token) {
			t.Errorf("step %s shows a secret: %q", s.Step, s.Detail)
		}
	}
}

// TestVerifyJWTCLIFindings: `caddy custom-auth test` tells an expired token from a
// badly signed one, and sends no identity API request.
func TestVerifyJWTCLIFindings(t *testing.T) {
	config := writeCaddyfile(t, fmt.Sprintf(`
:0 {
	custom_auth {
		bot shop {
			verify_jwt {
				secret %s
			}
		}
	}
	respond ok
}`, testJWTSecret))
	now := time.Now()
	otherSecret := signingKey{method: jwt.SigningMethodHS256, key: []byte(strings.Repeat("s", 40))}
	for _, tc := range []struct {
		name, token string
		code        int
		want        string
	}{
		{"verified", hmacKey.sign(t, claimsFor("shop", now, jwt.MapClaims{"name": "B"})), 0, "3. identity  ok    id \"2\""},
		{"expired", hmacKey.sign(t, claimsFor("shop", now, jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()})), 1, "rejected: token refused: token has invalid claims: token is expired"},
		{"bad signature", otherSecret.sign(t, claimsFor("shop", now, nil)), 1, "rejected: token refused: token signature is invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "--config", config, "--adapter", "caddyfile", "--bot", "shop", "--token", tc.token)
			if code != tc.code || !strings.Contains(out, tc.want) || !strings.Contains(out, "verify_jwt: HS256 with the configured secret") {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s%s", code, tc.code, tc.want, out, errOut)
			}
			if strings.Contains(out, "identity API") || strings.Contains(out, tc.token) || strings.Contains(out, testJWTSecret) {
				t.Errorf("output shows an API request, the token or the secret:\n%s", out)
			}
		})
	}
}

// FuzzVerifyJWT feeds the token parser arbitrary tokens: it never panics, never calls
// a token verified unless it is signed with the secret, and says why it refuses one.
func FuzzVerifyJWT(f *testing.F) {
	clk := newClock()
	now := clk.Now()
	h := jwtHandler(f, clk, map[string]*Bot{"shop": noCache(&Bot{VerifyJWT: &JWTSettings{Secret: testJWTSecret}})})
	good := hmacKey.sign(f, claimsFor("shop", now, jwt.MapClaims{"name": "B", "metadata": map[string]any{"a": 1}}))
	unsigned, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claimsFor("shop", now, nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, seed := range []string{
		good, unsigned, "", ".", "..", "a.b.c", "e30.e30.", "e30.e30.e30",
		hmacKey.sign(f, claimsFor("shop", now, jwt.MapClaims{"exp": nil})),
		hmacKey.sign(f, claimsFor("shop", now, jwt.MapClaims{"sub": nil, "external_id": []int{1}})),
		hmacKey.sign(f, claimsFor("shop", now, jwt.MapClaims{"aud": []string{"x", "shop"}, "email_verified": "false"})),
		good[:len(good)-2], strings.Replace(good, ".", "..", 1), good + ".x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		res := h.bots["shop"].jwt.verify(context.Background(), token, h.bots["shop"].identifyBy)
		switch res.kind {
		case verdictVerified:
			if res.identity == nil || res.identity.primary() == "" {
				t.Fatalf("verified without a primary key: %+v", res)
			}
			if _, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return []byte(testJWTSecret), nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(clk.Now), jwt.WithoutClaimsValidation()); err != nil {
				t.Fatalf("verified a token that is not signed with the secret: %v", err)
			}
		case verdictRejected, verdictError:
			if res.err == nil {
				t.Fatalf("refused without a reason: %+v", res)
			}
		}
	})
}

// BenchmarkServeHTTPJWT is the cost of a verify_jwt visitor, next to
// BenchmarkServeHTTPWarm and with the same browser request: warm, the verdict is
// cached; cold, the cache is off and each request checks the signature. The harness
// sub-benchmark is the loop's own cost, to subtract from the others.
func BenchmarkServeHTTPJWT(b *testing.B) {
	run := func(b *testing.B, key signingKey, warm, harness bool) {
		clk := newClock()
		settings := &JWTSettings{Secret: testJWTSecret}
		if key.kid != "" {
			settings = &JWTSettings{JWKSURL: newJWKSServer(b, key).URL}
		}
		bot := &Bot{VerifyJWT: settings, Whitelist: []string{"shop.example.com", "*.example.org"}}
		if !warm {
			noCache(bot)
		}
		h := jwtHandler(b, clk, map[string]*Bot{"shop": bot})
		h.env.logger = zap.NewNop()
		token := key.sign(b, claimsFor("shop", clk.Now(), jwt.MapClaims{"external_id": "2", "name": "Nguyễn Văn B", "email": "b@example.com"}))
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
		// The headers a browser sends with a widget request, as in BenchmarkServeHTTPWarm.
		base := widgetRequest("shop", token, "https://shop.example.com", "X-User-Id", "2",
			"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
			"Accept", "*/*", "Content-Type", "application/json", "Content-Length", "13",
			"Accept-Encoding", "gzip, deflate, br, zstd", "Accept-Language", "vi-VN,vi;q=0.9,en;q=0.8",
			"Referer", "https://shop.example.com/cart", "Sec-Fetch-Mode", "cors", "Sec-Fetch-Site", "cross-site",
			"Sec-Fetch-Dest", "empty", "Connection", "keep-alive")
		repl := caddyhttp.NewTestReplacer(base)
		w := httptest.NewRecorder()
		header := base.Header.Clone()
		r := base.Clone(base.Context())
		if err := h.ServeHTTP(w, r, next); err != nil || r.Header.Get("X-Contact-Id") != "2" {
			b.Fatalf("not verified: %v %v", err, r.Header)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			r.Header = maps.Clone(header)
			*repl = *caddy.NewReplacer()
			if harness {
				continue // what the loop costs without the handler, to subtract
			}
			if err := h.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("harness", func(b *testing.B) { run(b, hmacKey, true, true) })
	for _, key := range []signingKey{hmacKey, newRSAKey("rsa-1"), newES256Key("ec-1"), newEdDSAKey("ed-1")} {
		b.Run(key.method.Alg()+"/warm", func(b *testing.B) { run(b, key, true, false) })
		b.Run(key.method.Alg()+"/cold", func(b *testing.B) { run(b, key, false, false) })
	}
}

// rsaModulusJWK is a JWK with an RSA modulus of the given size in bits: not a real
// key, which is what a hostile JWKS would list.
func rsaModulusJWK(kid string, bits int) string {
	n := make([]byte, bits/8)
	rand.Read(n)
	n[0] |= 0x80
	n[len(n)-1] |= 1
	return fmt.Sprintf(`{"kty":"RSA","kid":%q,"n":%q,"e":"AQAB"}`, kid, b64(n))
}

// TestParseJWKSKeyLimits: only RSA keys of 2048 to 8192 bits, P-256 and Ed25519 keys
// are used, from the first 100 keys of a set; any other
// is ignored with its kid, so that a token naming it is an error.
func TestParseJWKSKeyLimits(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384Point, _ := p384.PublicKey.Bytes()
	for _, tc := range []struct {
		name, jwk string
		used      bool
	}{
		{"RSA 2048", newRSAKey("k").jwk, true},
		{"P-256", newES256Key("k").jwk, true},
		{"Ed25519", newEdDSAKey("k").jwk, true},
		{"RSA 4096", rsaModulusJWK("k", 4096), true},
		{"RSA 8192", rsaModulusJWK("k", 8192), true},
		{"RSA 1024", rsaModulusJWK("k", 1024), false},
		{"RSA 8200", rsaModulusJWK("k", 8200), false},
		{"RSA 16384", rsaModulusJWK("k", 16384), false},
		{"RSA 118 kbit", rsaModulusJWK("k", 118*1024), false},
		{"RSA with an even e", strings.Replace(newRSAKey("k").jwk, `"e":"AQAB"`, `"e":"AQAA"`, 1), false},
		{"P-384", fmt.Sprintf(`{"kty":"EC","kid":"k","crv":"P-384","x":%q,"y":%q}`, b64(p384Point[1:49]), b64(p384Point[49:])), false},
		{"an encryption key", strings.Replace(newRSAKey("k").jwk, `"use":"sig"`, `"use":"enc"`, 1), false},
		{"alg of another type", strings.Replace(newRSAKey("k").jwk, `"alg":"RS256"`, `"alg":"ES256"`, 1), false},
		{"a private key", strings.Replace(newEdDSAKey("k").jwk, `"kty"`, `"d":"AAAA","kty"`, 1), false},
		{"an HMAC key", `{"kty":"oct","kid":"k","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}`, false},
		{"malformed", `{"kty":"OKP","kid":"k","crv":"Ed25519","x":"short"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, ignored, err := parseJWKS([]byte(`{"keys":[` + newEdDSAKey("other").jwk + `,` + tc.jwk + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			_, used := (&keySet{keys: keys}).find("k")
			why := (&keySet{ignored: ignored}).ignoredWhy("k")
			if used != tc.used || (why == nil) != tc.used {
				t.Errorf("used %v (ignored: %v), want used %v", used, why, tc.used)
			}
		})
	}

	var many []string
	for i := range maxJWKSKeys + 5 {
		many = append(many, strings.Replace(newEdDSAKey(fmt.Sprintf("k%d", i)).jwk, `"kty"`, `"use":"sig","kty"`, 1))
	}
	keys, ignored, err := parseJWKS([]byte(`{"keys":[` + strings.Join(many, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != maxJWKSKeys || len(ignored) != 5 || (&keySet{ignored: ignored}).ignoredWhy(fmt.Sprintf("k%d", maxJWKSKeys)) == nil {
		t.Errorf("a set of %d keys: %d used, %d ignored", len(many), len(keys), len(ignored))
	}
}

// TestVerifyJWTKeyLimits: a token naming a key that its JWKS lists but that is
// ignored (a 16-kbit RSA modulus) is an error, at once; the set's good key still
// verifies; a token over 16 KiB is rejected unread, without a JWKS fetch.
func TestVerifyJWTKeyLimits(t *testing.T) {
	clk := newClock()
	good := newRSAKey("good")
	huge := signingKey{kid: "huge", method: jwt.SigningMethodRS256, key: rsaTestKey(), jwk: rsaModulusJWK("huge", 16384)}
	jwks := newJWKSServer(t, good, huge)
	h := jwtHandler(t, clk, map[string]*Bot{
		"shop":  noCache(&Bot{VerifyJWT: &JWTSettings{JWKSURL: jwks.URL}}),
		"other": noCache(&Bot{VerifyJWT: &JWTSettings{JWKSURL: jwks.URL + "/other"}}),
	})

	start := time.Now()
	for range 20 {
		if out := identifyToken(h, "shop", huge.sign(t, claimsFor("shop", clk.Now(), nil))); outcomeText(out) != "fallback/error" {
			t.Fatalf("token naming the 16-kbit key: %s (%v)", outcomeText(out), out.err)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("20 tokens naming the 16-kbit key took %v", took)
	}
	if out := identifyToken(h, "shop", good.sign(t, claimsFor("shop", clk.Now(), nil))); outcomeText(out) != "verified/" {
		t.Errorf("the good RSA-2048 key: %s (%v)", outcomeText(out), out.err)
	}
	if n := jwks.calls.Load(); n != 1 {
		t.Errorf("JWKS fetches = %d, want 1 (an ignored kid is not an unknown one)", n)
	}

	long := good.sign(t, claimsFor("other", clk.Now(), jwt.MapClaims{"name": strings.Repeat("n", maxTokenSize)}))
	if out := identifyToken(h, "other", long); outcomeText(out) != "fallback/rejected" {
		t.Errorf("a token of %d bytes: %s (%v)", len(long), outcomeText(out), out.err)
	}
	if n := jwks.calls.Load(); n != 1 {
		t.Errorf("a token over 16 KiB was read: %d JWKS fetches", n)
	}
}

// TestVerifyJWTRefreshHoldsBack: the key set's background refresh follows the
// remote value's hold-back (TestRemoteValueHoldsBackAfterFailure): once a refresh
// failed, tokens that find the keys old start no other fetch for a few seconds, and
// the keys at hand verify meanwhile.
func TestVerifyJWTRefreshHoldsBack(t *testing.T) {
	clk := newClock()
	key := newEdDSAKey("ed-1")
	jwks := newJWKSServer(t, key)
	h := jwtHandler(t, clk, map[string]*Bot{"shop": noCache(&Bot{VerifyJWT: &JWTSettings{JWKSURL: jwks.URL}})})
	keys := &h.bots["shop"].jwt.jwks.keys
	token := func() string { return key.sign(t, claimsFor("shop", clk.Now(), nil)) }
	if out := identifyToken(h, "shop", token()); outcomeText(out) != "verified/" {
		t.Fatalf("first token: %s (%v)", outcomeText(out), out.err)
	}

	jwks.setDown(true)
	clk.advance(jwksRefresh)
	for i := range 5 {
		if out := identifyToken(h, "shop", token()); outcomeText(out) != "verified/" {
			t.Fatalf("token %d while refreshes fail: %s (%v)", i, outcomeText(out), out.err)
		}
		eventually(t, "the background refresh", func() bool { return keys.refreshesUnderWay() == 0 })
		clk.advance(holdBackAfterFailure / 10)
	}
	if n := jwks.calls.Load(); n != 2 {
		t.Errorf("JWKS fetches = %d, want 2: one refresh, then held back", n)
	}
	clk.advance(holdBackAfterFailure)
	identifyToken(h, "shop", token())
	eventually(t, "the refresh after the hold-back", func() bool { return jwks.calls.Load() == 3 && keys.refreshesUnderWay() == 0 })
}

// TestJWKSOfManyKeysCostsBounded: a token without a kid is tried against at most
// maxKeysWithoutKID keys; entries past the cap without a kid are not kept, and the
// reasons of the ignored ones are cut short, so that a hostile JWKS makes neither a
// long log line nor a large cached error.
func TestJWKSOfManyKeysCostsBounded(t *testing.T) {
	var few, many []string
	for i := range maxKeysWithoutKID + 1 {
		many = append(many, newEdDSAKey(fmt.Sprintf("k%d", i)).jwk)
	}
	few = many[:maxKeysWithoutKID]
	for _, tc := range []struct {
		jwks   []string
		wantOK bool
	}{{few, true}, {many, false}} {
		keys, _, err := parseJWKS([]byte(`{"keys":[` + strings.Join(tc.jwks, ",") + `]}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = (&keySet{keys: keys}).keysFor("EdDSA")
		if (err == nil) != tc.wantOK || (err != nil && !errors.Is(err, errNoKeys)) {
			t.Errorf("%d keys, a token without a kid: %v, want ok %v", len(tc.jwks), err, tc.wantOK)
		}
	}

	entries := []string{newEdDSAKey("good").jwk}
	for range maxJWKSKeys + 5000 {
		entries = append(entries, "1")
	}
	entries = append(entries, `{"kid":"late"}`)
	keys, ignored, err := parseJWKS([]byte(`{"keys":[` + strings.Join(entries, ",") + `]}`))
	if err != nil || len(keys) != 1 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	if len(ignored) != maxJWKSKeys { // the first 99 tiny entries, and "late"
		t.Errorf("%d ignored kept, want %d", len(ignored), maxJWKSKeys)
	}
	if why := (&keySet{ignored: ignored}).ignoredWhy("late"); why == nil {
		t.Error(`the key "late" past the cap is not said to be ignored`)
	}
	if whys := reasons(ignored); len(whys) != maxReasons+1 || whys[maxReasons] != fmt.Sprintf("and %d more", len(ignored)-maxReasons) {
		t.Errorf("reasons: %d lines, last %q", len(whys), whys[len(whys)-1])
	}
}
