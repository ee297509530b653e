package contact

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testNow  = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	testData = json.RawMessage(`{"id":"2","name":"Nguyễn Văn B","metadata":{"order_id":"ORD-5578XZ"}}`)
	hmacKey  = []byte("0123456789abcdef0123456789abcdef")
)

func at(now time.Time) VerifierOption { return WithClock(func() time.Time { return now }) }

func edKey(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, s *Signer) string {
	t.Helper()
	token, err := s.Sign("shop", "2", "id", testData, testNow, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func jwksVerifier(t *testing.T, s *Signer, opts ...VerifierOption) *Verifier {
	t.Helper()
	jwks, err := s.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewJWKSVerifier(jwks, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRoundTrip(t *testing.T) {
	hs, err := NewHMACSigner(hmacKey)
	if err != nil {
		t.Fatal(err)
	}
	ed, _ := NewKeySigner(edKey(t))
	es, _ := NewKeySigner(ecKey(t))
	hsVerifier, _ := NewHMACVerifier(hmacKey, at(testNow))

	for name, tc := range map[string]struct {
		signer   *Signer
		verifier *Verifier
		alg      string
	}{
		"HS256": {hs, hsVerifier, "HS256"},
		"EdDSA": {ed, jwksVerifier(t, ed, at(testNow)), "EdDSA"},
		"ES256": {es, jwksVerifier(t, es, at(testNow)), "ES256"},
	} {
		t.Run(name, func(t *testing.T) {
			token := sign(t, tc.signer)
			header, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
			if !strings.Contains(string(header), `"alg":"`+tc.alg+`"`) {
				t.Errorf("header %s", header)
			}
			claims, err := tc.verifier.Verify(token, "shop")
			if err != nil {
				t.Fatal(err)
			}
			if claims.Issuer != "custom_auth" || claims.Audience != "shop" || claims.Subject != "2" || claims.IdentifyBy != "id" ||
				claims.ID == "" || !claims.IssuedAt.Equal(testNow) || !claims.ExpiresAt.Equal(testNow.Add(time.Minute)) {
				t.Errorf("claims = %+v", claims)
			}
			if string(claims.Data) != string(testData) {
				t.Errorf("contact = %s", claims.Data)
			}
			c, err := claims.Contact()
			if err != nil || c.Name != "Nguyễn Văn B" || c.Metadata["order_id"] != "ORD-5578XZ" || c.IdentifyBy != "id" {
				t.Errorf("Contact() = %+v, %v", c, err)
			}
		})
	}
}

func TestPayloadHasTheSPECsClaims(t *testing.T) {
	s, _ := NewHMACSigner(hmacKey)
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(sign(t, s), ".")[1])
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"iss", "aud", "sub", "idb", "contact", "iat", "exp", "jti"} {
		if _, ok := claims[name]; !ok {
			t.Errorf("claim %s missing: %s", name, payload)
		}
	}
	if claims["aud"] != "shop" || claims["exp"].(float64)-claims["iat"].(float64) != 60 {
		t.Errorf("payload %s", payload)
	}
	if len(claims) != 8 {
		t.Errorf("payload has extra claims: %s", payload)
	}
}

func TestRefusals(t *testing.T) {
	hs, _ := NewHMACSigner(hmacKey)
	ed, _ := NewKeySigner(edKey(t))
	edVerifier := jwksVerifier(t, ed, at(testNow))
	hsVerifier, _ := NewHMACVerifier(hmacKey, at(testNow))
	good := sign(t, hs)

	tampered := func() string {
		parts := strings.Split(good, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		payload = []byte(strings.Replace(string(payload), `"sub":"2"`, `"sub":"1"`, 1))
		parts[1] = base64.RawURLEncoding.EncodeToString(payload)
		return strings.Join(parts, ".")
	}()
	otherKey, _ := NewHMACSigner([]byte("another-key-another-key-another-key"))
	algNone := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, &Claims{Issuer: Issuer, Audience: "shop", Subject: "1",
			IssuedAt: jwt.NewNumericDate(testNow), ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Minute))})
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	// HS256 "signed" with the public key, which an attacker knows: the classic
	// algorithm confusion.
	confused := func() string {
		jwks, _ := ed.JWKS()
		var set struct{ Keys []JWK }
		_ = json.Unmarshal(jwks, &set)
		pub, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, &Claims{Issuer: Issuer, Audience: "shop", Subject: "1",
			IssuedAt: jwt.NewNumericDate(testNow), ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Minute))})
		tok.Header["kid"] = set.Keys[0].KeyID
		s, _ := tok.SignedString(pub)
		return s
	}()
	wrongIssuer := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, &Claims{Issuer: "someone", Audience: "shop",
			IssuedAt: jwt.NewNumericDate(testNow), ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Minute))})
		s, _ := tok.SignedString(hmacKey)
		return s
	}()
	noExpiry := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, &Claims{Issuer: Issuer, Audience: "shop", IssuedAt: jwt.NewNumericDate(testNow)})
		s, _ := tok.SignedString(hmacKey)
		return s
	}()
	expiredVerifier, _ := NewHMACVerifier(hmacKey, at(testNow.Add(time.Minute+DefaultLeeway+time.Second)))
	withinLeeway, _ := NewHMACVerifier(hmacKey, at(testNow.Add(time.Minute+DefaultLeeway-time.Second)))
	if _, err := withinLeeway.Verify(good, "shop"); err != nil {
		t.Errorf("within the leeway: %v", err)
	}
	tooEarly := testNow.Add(DefaultLeeway + time.Second)
	for name, token := range map[string]string{
		"nbf within the leeway": hmacToken(t, map[string]any{"nbf": testNow.Add(DefaultLeeway - time.Second).Unix()}, nil),
		"nbf now":               hmacToken(t, map[string]any{"nbf": testNow.Unix()}, nil),
		"iat within the leeway": hmacToken(t, map[string]any{"iat": testNow.Add(DefaultLeeway - time.Second).Unix()}, nil),
	} {
		if _, err := hsVerifier.Verify(token, "shop"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	for _, tc := range []struct {
		name     string
		verifier *Verifier
		token    string
		bot      string
		want     error
	}{
		{"tampered payload", hsVerifier, tampered, "shop", ErrSignature},
		{"wrong key", hsVerifier, sign(t, otherKey), "shop", ErrSignature},
		{"alg none", hsVerifier, algNone, "shop", ErrAlgorithm},
		{"alg none to a JWKS verifier", edVerifier, algNone, "shop", ErrAlgorithm},
		{"HS256 token to an EdDSA verifier", edVerifier, confused, "shop", ErrAlgorithm},
		{"HS256 token with another kid", edVerifier, good, "shop", ErrAlgorithm},
		{"EdDSA token to an HS256 verifier", hsVerifier, sign(t, ed), "shop", ErrAlgorithm},
		{"no bot id", hsVerifier, good, "", ErrAudience},
		{"expired", expiredVerifier, good, "shop", ErrExpired},
		{"no expiry", hsVerifier, noExpiry, "shop", ErrMalformed},
		{"wrong audience", hsVerifier, good, "other-bot", ErrAudience},
		{"wrong issuer", hsVerifier, wrongIssuer, "shop", ErrIssuer},
		{"nbf in the future", hsVerifier, hmacToken(t, map[string]any{"nbf": tooEarly.Unix()}, nil), "shop", ErrNotYetValid},
		{"iat in the future", hsVerifier, hmacToken(t, map[string]any{"iat": tooEarly.Unix()}, nil), "shop", ErrNotYetValid},
		// RFC 7515 §4.1.11: an extension listed in crit that is not understood makes
		// the token invalid, and none is.
		{"crit header", hsVerifier, hmacToken(t, nil, map[string]any{"crit": []string{"exp"}}), "shop", ErrMalformed},
		{"crit extension", hsVerifier, hmacToken(t, nil, map[string]any{"crit": []string{"b64"}, "b64": true}), "shop", ErrMalformed},
		{"empty crit", hsVerifier, hmacToken(t, nil, map[string]any{"crit": []string{}}), "shop", ErrMalformed},
		{"null crit", hsVerifier, hmacToken(t, nil, map[string]any{"crit": nil}), "shop", ErrMalformed},
		{"garbage", hsVerifier, "not.a.jwt", "shop", ErrMalformed},
		{"empty", hsVerifier, "", "shop", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := tc.verifier.Verify(tc.token, tc.bot)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v (claims %+v)", err, tc.want, claims)
			}
			if claims != nil {
				t.Error("claims returned with an error")
			}
		})
	}
}

// hmacToken signs, with the test HS256 key, the claims of a valid assertion for bot
// shop changed by claims, with extra protected headers. Unlike Sign it can set any
// claim, as a forger holding the key (or another issuer) could.
func hmacToken(t *testing.T, claims, headers map[string]any) string {
	t.Helper()
	all := jwt.MapClaims{"iss": Issuer, "aud": "shop", "sub": "2", "idb": "id", "contact": json.RawMessage(testData),
		"iat": testNow.Unix(), "exp": testNow.Add(time.Minute).Unix(), "jti": "j"}
	maps.Copy(all, claims)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, all)
	maps.Copy(tok.Header, headers)
	s, err := tok.SignedString(hmacKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mirroredS returns an ES256 token with s replaced by N−s: the same claims, and a
// signature that crypto/ecdsa verifies too.
func mirroredS(t *testing.T, token string, pub *ecdsa.PublicKey) string {
	t.Helper()
	dot := strings.LastIndexByte(token, '.')
	sig, err := base64.RawURLEncoding.DecodeString(token[dot+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature %q: %v", token[dot+1:], err)
	}
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s).FillBytes(sig[32:])
	digest := sha256.Sum256([]byte(token[:dot]))
	if !ecdsa.Verify(pub, digest[:], r, s) {
		t.Fatal("the mirrored signature does not verify: the test proves nothing")
	}
	return token[:dot+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func TestES256RefusesHighS(t *testing.T) {
	key := ecKey(t)
	es, _ := NewKeySigner(key)
	v := jwksVerifier(t, es, at(testNow))
	low := sign(t, es)
	if _, err := v.Verify(low, "shop"); err != nil {
		t.Fatalf("low s: %v", err)
	}
	high := mirroredS(t, low, &key.PublicKey)
	claims, err := v.Verify(high, "shop")
	if !errors.Is(err, ErrSignature) || claims != nil {
		t.Errorf("high s: claims %+v, err %v; want %v", claims, err, ErrSignature)
	}
}

// TestES256SignsLowS: crypto/ecdsa picks either s, so about half of the signatures
// would be refused without the normalisation; 64 in a row cannot pass by chance.
func TestES256SignsLowS(t *testing.T) {
	es, _ := NewKeySigner(ecKey(t))
	v := jwksVerifier(t, es, at(testNow))
	halfN := new(big.Int).Rsh(elliptic.P256().Params().N, 1)
	for i := range 64 {
		token := sign(t, es)
		sig, _ := base64.RawURLEncoding.DecodeString(token[strings.LastIndexByte(token, '.')+1:])
		if s := new(big.Int).SetBytes(sig[32:]); s.Cmp(halfN) > 0 {
			t.Fatalf("signature %d has a high s", i)
		}
		if _, err := v.Verify(token, "shop"); err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
	}
}

func TestUnknownKeyID(t *testing.T) {
	a, _ := NewKeySigner(edKey(t))
	b, _ := NewKeySigner(edKey(t))
	c, _ := NewKeySigner(edKey(t))
	jwksA, _ := a.JWKS()
	jwksB, _ := b.JWKS()
	// A verifier with two keys, neither of which signed the token.
	var setA, setB struct{ Keys []JWK }
	_ = json.Unmarshal(jwksA, &setA)
	_ = json.Unmarshal(jwksB, &setB)
	both, _ := json.Marshal(map[string]any{"keys": append(setA.Keys, setB.Keys...)})
	v, err := NewJWKSVerifier(both, at(testNow))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(sign(t, c), "shop"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("err = %v", err)
	}
	for _, s := range []*Signer{a, b} {
		if _, err := v.Verify(sign(t, s), "shop"); err != nil {
			t.Errorf("known key: %v", err)
		}
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := ecKey(t), edKey(t)
	before, _ := NewKeySigner(oldKey)
	oldToken := sign(t, before)
	after, _ := NewKeySigner(newKey, oldKey)
	v := jwksVerifier(t, after, at(testNow))
	newToken := sign(t, after)
	for name, token := range map[string]string{"old": oldToken, "new": newToken} {
		if _, err := v.Verify(token, "shop"); err != nil {
			t.Errorf("%s key: %v", name, err)
		}
	}
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(newToken, ".")[0])
	if !strings.Contains(string(header), `"EdDSA"`) {
		t.Errorf("the first key did not sign: %s", header)
	}
	jwks, _ := after.JWKS()
	if strings.Contains(string(jwks), `"d"`) {
		t.Errorf("JWKS has private material: %s", jwks)
	}
	var set struct{ Keys []JWK }
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS %s: %v", jwks, err)
	}
	if set.Keys[0].Algorithm != "EdDSA" || set.Keys[1].Algorithm != "ES256" || set.Keys[0].Use != "sig" {
		t.Errorf("JWKS keys %+v", set.Keys)
	}
	// The old signer, still running somewhere during the rollout, is verified by the
	// key it shares with the new one.
	if _, err := v.Verify(sign(t, before), "shop"); err != nil {
		t.Errorf("old signer after rotation: %v", err)
	}
}

func TestJWKSRefusesMislabelledKeys(t *testing.T) {
	ed, _ := NewKeySigner(edKey(t))
	jwks, _ := ed.JWKS()
	for name, edit := range map[string]func(*JWK){
		"alg of another type": func(k *JWK) { k.Algorithm = "HS256" },
		"encryption key":      func(k *JWK) { k.Use = "enc" },
		"unknown curve":       func(k *JWK) { k.Curve = "X25519" },
		"short x":             func(k *JWK) { k.X = k.X[:10] },
	} {
		var set struct {
			Keys []JWK `json:"keys"`
		}
		_ = json.Unmarshal(jwks, &set)
		edit(&set.Keys[0])
		bad, _ := json.Marshal(set)
		if _, err := NewJWKSVerifier(bad); err == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}
	for name, data := range map[string]string{"empty set": `{"keys":[]}`, "not JSON": `keys`} {
		if _, err := NewJWKSVerifier([]byte(data)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestSignDefaultTTL(t *testing.T) {
	s, _ := NewHMACSigner(hmacKey)
	token, err := s.Sign("shop", "2", "id", testData, testNow, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewHMACVerifier(hmacKey, at(testNow))
	claims, err := v.Verify(token, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if got := claims.ExpiresAt.Sub(claims.IssuedAt.Time); got != DefaultTTL || DefaultTTL != 60*time.Second {
		t.Errorf("exp - iat = %v", got)
	}
	other, _ := s.Sign("shop", "2", "id", testData, testNow, 0)
	if c2, _ := v.Verify(other, "shop"); c2 == nil || c2.ID == claims.ID {
		t.Error("two assertions share a jti")
	}
}

func TestKeys(t *testing.T) {
	if _, err := NewHMACSigner([]byte("short")); err == nil {
		t.Error("short HS256 key accepted")
	}
	if _, err := NewHMACVerifier([]byte("short")); err == nil {
		t.Error("short HS256 verification key accepted")
	}
	hs, _ := NewHMACSigner(hmacKey)
	if _, err := hs.JWKS(); err == nil {
		t.Error("an HS256 key was published")
	}

	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey(t))
	ec := ecKey(t)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)

	keys, err := ParsePrivateKeysPEM(append(pemOf("PRIVATE KEY", edDER), pemOf("EC PRIVATE KEY", ecDER)...))
	if err != nil || len(keys) != 2 {
		t.Fatalf("Ed25519 + P-256: %d keys, %v", len(keys), err)
	}
	for name, data := range map[string][]byte{
		"P-384":  pemOf("PRIVATE KEY", p384DER),
		"RSA":    pemOf("PRIVATE KEY", rsaDER),
		"empty":  nil,
		"no key": pemOf("CERTIFICATE", []byte{1, 2, 3}),
	} {
		if _, err := ParsePrivateKeysPEM(data); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, err := NewKeySigner(crypto.Signer(rsaKey)); err == nil {
		t.Error("RSA signer accepted")
	}
	if _, err := NewPublicKeyVerifier([]crypto.PublicKey{ec.Public()}); err != nil {
		t.Errorf("public key verifier: %v", err)
	}
}

func TestMiddleware(t *testing.T) {
	hs, _ := NewHMACSigner(hmacKey)
	v, _ := NewHMACVerifier(hmacKey, at(testNow))
	var got *Contact
	var seen http.Header
	handler := Middleware(v, DefaultPrefix, func(r *http.Request) string { return r.Header.Get("X-Bot-Id") })(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, _ = FromContext(r.Context())
			seen = r.Header.Clone()
		}))

	for _, tc := range []struct {
		name, bot, assertion string
		verified             bool
	}{
		{"valid", "shop", sign(t, hs), true},
		{"another bot", "other", sign(t, hs), false},
		{"no bot id", "", sign(t, hs), false},
		{"forged", "shop", "eyJhbGciOiJub25lIn0.e30.", false},
		{"none", "shop", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, seen = nil, nil
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("X-Bot-Id", tc.bot)
			// Unsigned headers never count, whatever their spelling.
			r.Header.Set("X-Contact-Id", "1")
			r.Header["X_contact_label"] = []string{"VIP"}
			if tc.assertion != "" {
				r.Header.Set("X-Contact-Assertion", tc.assertion)
			}
			handler.ServeHTTP(httptest.NewRecorder(), r)
			if (got != nil) != tc.verified {
				t.Fatalf("contact %+v", got)
			}
			if seen.Get("X-Bot-Id") != tc.bot || seen.Get("X_contact_label") != "" {
				t.Errorf("headers behind the middleware: %v", seen)
			}
			fromHeaders, err := FromHeaders(seen, DefaultPrefix)
			if !tc.verified {
				if seen.Get("X-Contact-Id") != "" || seen.Get("X-Contact-Assertion") != "" || !errors.Is(err, ErrNoContact) {
					t.Errorf("unsigned headers reached the backend: %v", seen)
				}
				return
			}
			if got.ID != "2" || got.Name != "Nguyễn Văn B" || got.IdentifyBy != "id" {
				t.Errorf("contact %+v", got)
			}
			// The headers now say what the assertion signs.
			if err != nil || fromHeaders.ID != "2" || fromHeaders.Name != "Nguyễn Văn B" || seen.Get("X-Contact-Assertion") != tc.assertion {
				t.Errorf("headers %v: %+v, %v", seen, fromHeaders, err)
			}
		})
	}
}

func TestHeadersMiddleware(t *testing.T) {
	var got *Contact
	handler := HeadersMiddleware(DefaultPrefix)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = FromContext(r.Context())
	}))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Contact-Id", "2")
	r.Header.Set("X-Contact-Identify-By", "id")
	handler.ServeHTTP(httptest.NewRecorder(), r)
	if got == nil || got.ID != "2" {
		t.Errorf("verified: %+v", got)
	}
	got = nil
	r.Header.Del("X-Contact-Identify-By")
	handler.ServeHTTP(httptest.NewRecorder(), r)
	if got != nil {
		t.Errorf("anonymous: %+v", got)
	}
}

// FuzzVerify feeds arbitrary tokens to the verifiers: they must never panic and never
// accept a token that was not signed with their key.
func FuzzVerify(f *testing.F) {
	hs, _ := NewHMACSigner(hmacKey)
	good, _ := hs.Sign("shop", "2", "id", testData, testNow, time.Minute)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, &Claims{Issuer: Issuer, Audience: "shop", Subject: "2",
		IssuedAt: jwt.NewNumericDate(testNow), ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Minute))})
	algNone, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, seed := range []string{good, "", ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", algNone, good + "x", strings.ToUpper(good)} {
		f.Add(seed)
	}
	hsVerifier, _ := NewHMACVerifier(hmacKey, at(testNow))
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edVerifier, _ := NewPublicKeyVerifier([]crypto.PublicKey{edPriv.Public()}, at(testNow))
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := edVerifier.Verify(token, "shop"); err == nil {
			t.Fatalf("a token not signed with the key verified: %q", token)
		}
		claims, err := hsVerifier.Verify(token, "shop")
		if err == nil && (claims.Issuer != Issuer || claims.Audience != "shop") {
			t.Fatalf("verified with wrong claims: %+v", claims)
		}
	})
}
