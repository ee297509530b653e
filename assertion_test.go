package customauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/custom-auth/custom_auth/contact"
)

func writeKey(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAssertionHS256(t *testing.T) {
	api := newIdentityAPI(t)
	t.Setenv("CA_TEST_SIGN_KEY", "an-hs256-key-of-at-least-32-bytes!!")
	clk := newClock()
	h := provision(t, &Handler{SignKey: "{env.CA_TEST_SIGN_KEY}", now: clk.Now,
		Bots: map[string]*Bot{"shop": {AuthURL: api.URL}}})
	got := serve(t, h, widgetRequest("shop", "alice-token", ""))
	token := got.header.Get("X-Contact-Assertion")
	if token == "" {
		t.Fatal("no assertion")
	}
	verifier, err := contact.NewHMACVerifier([]byte("an-hs256-key-of-at-least-32-bytes!!"), contact.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := verifier.Verify(token, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if claims.Issuer != "custom_auth" || claims.Subject != "2" || claims.IdentifyBy != "id" || claims.ID == "" {
		t.Errorf("claims = %+v", claims)
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) != 60*time.Second || !claims.IssuedAt.Equal(clk.Now()) {
		t.Errorf("iat %v exp %v", claims.IssuedAt, claims.ExpiresAt)
	}
	var data map[string]any
	if err := json.Unmarshal(claims.Data, &data); err != nil || data["name"] != "Nguyễn Văn B" || data["metadata"] == nil {
		t.Errorf("contact claim = %s (%v)", claims.Data, err)
	}
	if _, err := verifier.Verify(token, "other-bot"); err == nil {
		t.Error("assertion for bot shop accepted for another bot")
	}

	// Two requests, two unique ids.
	again := serve(t, h, widgetRequest("shop", "alice-token", "")).header.Get("X-Contact-Assertion")
	second, err := verifier.Verify(again, "shop")
	if err != nil || second.ID == claims.ID {
		t.Errorf("jti not unique: %v %v", second, err)
	}
}

func TestAssertionRejectsShortKey(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{SignKey: "too-short"}
	err := h.Provision(ctx)
	h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "sign_key") {
		t.Errorf("short key: %v", err)
	}
}

func TestAssertionKeyFilesAndJWKS(t *testing.T) {
	api := newIdentityAPI(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	newFile, oldFile := writeKey(t, edKey), writeKey(t, ecKey)

	config := func(files ...string) *Handler {
		return provision(t, &Handler{
			SignKeyFiles: files,
			JWKSPath:     "/.well-known/custom-auth/jwks.json",
			AssertionTTL: caddy.Duration(2 * time.Minute),
			CacheSize:    defaultCacheSize,
			Bots:         map[string]*Bot{"shop": {AuthURL: api.URL}},
		})
	}
	jwksOf := func(h *Handler) []byte {
		r := httptest.NewRequest(http.MethodGet, "/.well-known/custom-auth/jwks.json", nil)
		got := serve(t, h, r)
		if got.called || got.err != nil {
			t.Fatalf("JWKS path passed on: %v", got.err)
		}
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r, nil); err != nil {
			t.Fatal(err)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, "json") {
			t.Errorf("JWKS content type %q", ct)
		}
		return rec.Body.Bytes()
	}

	// Before rotation: the old key signs.
	before := config(oldFile)
	oldToken := serve(t, before, widgetRequest("shop", "alice-token", "")).header.Get("X-Contact-Assertion")

	// Rotation: the new key first, the old one still published.
	after := config(newFile, oldFile)
	jwks := jwksOf(after)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS = %s (%v)", jwks, err)
	}
	for _, k := range set.Keys {
		if _, private := k["d"]; private {
			t.Fatal("JWKS publishes a private key")
		}
	}
	verifier, err := contact.NewJWKSVerifier(jwks)
	if err != nil {
		t.Fatal(err)
	}
	newToken := serve(t, after, widgetRequest("shop", "alice-token", "")).header.Get("X-Contact-Assertion")
	for name, token := range map[string]string{"new key": newToken, "old key": oldToken} {
		claims, err := verifier.Verify(token, "shop")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if claims.ExpiresAt.Sub(claims.IssuedAt.Time) != 2*time.Minute {
			t.Errorf("%s: assertion_ttl not applied", name)
		}
	}
	if header := strings.SplitN(newToken, ".", 2)[0]; !strings.Contains(decodeSegment(t, header), `"EdDSA"`) {
		t.Errorf("the first key does not sign: header %s", decodeSegment(t, header))
	}
}

func TestJWKSPathNeedsKeyFiles(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{SignKey: strings.Repeat("k", 32), JWKSPath: "/jwks.json"}
	err := h.Provision(ctx)
	h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "jwks_path") {
		t.Errorf("jwks_path with an HS256 key: %v", err)
	}
}

func decodeSegment(t *testing.T, segment string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(segment)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
