package customauth

// Integration tests of verify_jwt through a real Caddy, with real HTTP servers as the
// customer's JWKS endpoint, the chat backend's bots API and the chat backend. See
// caddy_test.go for the helpers and the fixed ports.

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/golang-jwt/jwt/v5"

	"github.com/custom-auth/custom_auth/contact"
)

// useClock gives the handlers Caddy runs the test's clock. Caddy provisions them with
// time.Now; they are given the clock before the first request reaches them.
func useClock(t *testing.T, clk *clock) {
	handlers := runningHandlers()
	if len(handlers) == 0 {
		t.Fatal("Caddy runs no custom_auth handler")
	}
	for _, h := range handlers {
		h.now = clk.Now
		h.env.now = clk.Now
		h.identities.(*cachedIdentifier).now = clk.Now
	}
}

func TestIntegrationVerifyJWT(t *testing.T) {
	be := newBackend(t)
	rsaKey, ecKey, edKey := newRSAKey("rsa-1"), newES256Key("ec-1"), newEdDSAKey("ed-1")
	jwks := newJWKSServer(t, rsaKey, ecKey, edKey)
	flaky := newJWKSServer(t, edKey)
	flaky.setDown(true)
	bots := newBotsAPI(t)
	bots.set("tenant", fmt.Sprintf(`{"verify_jwt":{"jwks_url":%q},"cache_ttl":0,"negative_ttl":0}`, jwks.URL+"/jwks"))

	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, "")+fmt.Sprintf(`
	http://localhost:9080 {
		handle /private/* {
			custom_auth {
				bots_url %[1]s/bots {
					allow_private
				}
			}
			reverse_proxy %[2]s {
				header_up X-Custom-Auth-Status {http.custom_auth.status}
				header_up X-Custom-Auth-Reason {http.custom_auth.reason}
			}
		}
		handle {
			custom_auth {
				sign_key %[3]s
				bots_url %[1]s/bots
				bot shop {
					verify_jwt {
						secret %[4]s
						issuer https://shop.example.com
					}
					whitelist shop.example.com
					cache_ttl 0
					negative_ttl 0
				}
				bot keyed {
					verify_jwt {
						jwks_url %[5]s/jwks
						audience chat-widget
					}
					cache_ttl 0
					negative_ttl 0
				}
				bot flaky {
					verify_jwt {
						jwks_url %[6]s/jwks
					}
				}
			}
			reverse_proxy %[2]s {
				header_up X-Custom-Auth-Status {http.custom_auth.status}
				header_up X-Custom-Auth-Reason {http.custom_auth.reason}
			}
		}
	}`, bots.URL, strings.TrimPrefix(be.URL, "http://"), testSignKey, testJWTSecret, jwks.URL, flaky.URL), "caddyfile")
	clk := newClock()
	useClock(t, clk)

	// send passes a widget request through Caddy and returns what the backend got.
	send := func(t *testing.T, path, bot, token string) *http.Request {
		t.Helper()
		req := gatewayRequest(path, token, "https://shop.example.com")
		req.Header.Set("X-Bot-Id", bot)
		spoof(req)
		tester.AssertResponse(req, http.StatusOK, "backend")
		got, _ := be.received(t)
		if got.Header.Get("X-Access-Token") != "" {
			t.Errorf("the token reached the backend")
		}
		return got
	}
	outcome := func(got *http.Request) string {
		return got.Header.Get("X-Custom-Auth-Status") + "/" + got.Header.Get("X-Custom-Auth-Reason")
	}

	now := clk.Now()
	shopClaims := func(changes jwt.MapClaims) jwt.MapClaims {
		c := claimsFor("shop", now, jwt.MapClaims{"iss": "https://shop.example.com"})
		for name, value := range changes {
			if value == nil {
				delete(c, name)
			} else {
				c[name] = value
			}
		}
		return c
	}
	keyedClaims := claimsFor("chat-widget", now, nil)
	unsigned, _ := jwt.NewWithClaims(jwt.SigningMethodNone, shopClaims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	publicDER, _ := x509.MarshalPKIXPublicKey(&rsaTestKey().PublicKey)
	confused := signingKey{kid: "rsa-1", method: jwt.SigningMethodHS256, key: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: publicDER})}
	impostor := newEdDSAKey("ed-1") // the kid of a listed key, another key

	t.Run("verified", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, bot, token string
		}{
			{"HS256 with the secret", "/chat", "shop", hmacKey.sign(t, shopClaims(nil))},
			{"RS256 from the JWKS", "/chat", "keyed", rsaKey.sign(t, keyedClaims)},
			{"ES256 from the JWKS", "/chat", "keyed", ecKey.sign(t, keyedClaims)},
			{"EdDSA from the JWKS", "/chat", "keyed", edKey.sign(t, keyedClaims)},
			{"a bots_url bot, allow_private", "/private/chat", "tenant", edKey.sign(t, claimsFor("tenant", now, nil))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := send(t, tc.path, tc.bot, tc.token)
				if o := outcome(got); o != "verified/" {
					t.Fatalf("outcome %s", o)
				}
				if id := got.Header.Get("X-Contact-Id"); id != "2" {
					t.Errorf("X-Contact-Id = %q", id)
				}
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, bot, token, want string
		}{
			{"alg none", "/chat", "shop", unsigned, "fallback/rejected"},
			{"HS256 signed with the RSA public key", "/chat", "keyed", confused.sign(t, keyedClaims), "fallback/rejected"},
			{"a wrong key under a listed kid", "/chat", "keyed", impostor.sign(t, keyedClaims), "fallback/rejected"},
			{"a wrong secret", "/chat", "shop", signingKey{method: jwt.SigningMethodHS256, key: []byte(strings.Repeat("s", 40))}.sign(t, shopClaims(nil)), "fallback/rejected"},
			{"expired", "/chat", "shop", hmacKey.sign(t, shopClaims(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()})), "fallback/rejected"},
			{"no exp", "/chat", "shop", hmacKey.sign(t, shopClaims(jwt.MapClaims{"exp": nil})), "fallback/rejected"},
			{"future nbf", "/chat", "shop", hmacKey.sign(t, shopClaims(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()})), "fallback/rejected"},
			{"wrong iss", "/chat", "shop", hmacKey.sign(t, shopClaims(jwt.MapClaims{"iss": "https://evil.example"})), "fallback/rejected"},
			{"wrong aud", "/chat", "shop", hmacKey.sign(t, shopClaims(jwt.MapClaims{"aud": "keyed"})), "fallback/rejected"},
			{"the bot id as aud where audience is set", "/chat", "keyed", rsaKey.sign(t, claimsFor("keyed", now, nil)), "fallback/rejected"},
			{"unparsable", "/chat", "shop", "this.is-not.a-jwt", "fallback/rejected"},
			{"a bots_url bot, no allow_private: its JWKS on 127.0.0.1 is refused", "/chat", "tenant", edKey.sign(t, claimsFor("tenant", now, nil)), "fallback/error"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := send(t, tc.path, tc.bot, tc.token)
				if o := outcome(got); o != tc.want {
					t.Errorf("outcome %s, want %s", o, tc.want)
				}
				for name, values := range got.Header {
					if contact.HasPrefix(name, "X-Contact-") {
						t.Errorf("fallback: backend got %s: %q", name, values)
					}
				}
			})
		}
	})

	t.Run("claim mapping", func(t *testing.T) {
		got := send(t, "/chat", "shop", hmacKey.sign(t, shopClaims(jwt.MapClaims{
			"sub": "auth0|42", "external_id": "2", "name": "Nguyễn Văn B", "email": "b@example.com",
			"email_verified": false, "label": "VIP", "metadata": map[string]any{"order_id": "ORD-5578XZ"},
		})))
		c, err := contact.FromHeaders(got.Header, contact.DefaultPrefix)
		if err != nil {
			t.Fatalf("%s: %v", outcome(got), err)
		}
		if c.ID != "2" || c.Name != "Nguyễn Văn B" || c.Email != "" || c.Label != "VIP" || c.Metadata["order_id"] != "ORD-5578XZ" {
			t.Errorf("contact = %+v", c)
		}
		verifier, _ := contact.NewHMACVerifier([]byte(testSignKey), contact.WithClock(clk.Now))
		claims, err := verifier.Verify(got.Header.Get("X-Contact-Assertion"), "shop")
		if err != nil || claims.Subject != "2" || strings.Contains(string(claims.Data), "b@example.com") {
			t.Errorf("assertion: %+v, %v", claims, err)
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		newKey := newES256Key("ec-2")
		jwks.publish(rsaKey, ecKey, edKey, newKey)
		for _, key := range []signingKey{newKey, ecKey} { // the new kid makes a fetch
			if o := outcome(send(t, "/chat", "keyed", key.sign(t, keyedClaims))); o != "verified/" {
				t.Errorf("%s during the rotation: %s", key.kid, o)
			}
		}
		jwks.publish(rsaKey, edKey, newKey)
		clk.advance(unknownKeyRefetch)
		// A kid nobody published makes the next fetch, which drops the old key.
		if o := outcome(send(t, "/chat", "keyed", newES256Key("ec-3").sign(t, keyedClaims))); o != "fallback/rejected" {
			t.Errorf("unknown kid: %s", o)
		}
		for key, want := range map[signingKey]string{ecKey: "fallback/rejected", newKey: "verified/"} {
			if o := outcome(send(t, "/chat", "keyed", key.sign(t, keyedClaims))); o != want {
				t.Errorf("%s after the rotation: %s, want %s", key.kid, o, want)
			}
		}
	})

	t.Run("JWKS down, then back", func(t *testing.T) {
		token := edKey.sign(t, claimsFor("flaky", now, nil))
		if o := outcome(send(t, "/chat", "flaky", token)); o != "fallback/error" {
			t.Errorf("JWKS down: %s", o)
		}
		flaky.setDown(false)
		clk.advance(holdBackAfterFailure)
		if o := outcome(send(t, "/chat", "flaky", token)); o != "verified/" {
			t.Errorf("JWKS back: %s", o)
		}
	})
}

// TestBinaryValidateVerifyJWT: `caddy validate` names the option, file and line of a
// verify_jwt mistake.
func TestBinaryValidateVerifyJWT(t *testing.T) {
	for _, tc := range []struct {
		name, bot, want, line string
	}{
		{"both sources", "verify_jwt {\n\t\t\t\tsecret " + testJWTSecret + "\n\t\t\t\tjwks_url https://a.example/jwks\n\t\t\t}",
			`bot \"b\": verify_jwt: secret and jwks_url exclude each other`, "Caddyfile:8"},
		{"with auth_url", "auth_url https://a.example/ca\n\t\t\tverify_jwt {\n\t\t\t\tsecret " + testJWTSecret + "\n\t\t\t}",
			`bot \"b\": verify_jwt: a bot has auth_url or verify_jwt, not both`, "Caddyfile:8"},
		{"short secret", "verify_jwt {\n\t\t\t\tsecret short\n\t\t\t}", `verify_jwt: secret: an HS256 secret must be at least 32 bytes`, "Caddyfile:5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeCaddyfile(t, ":0 {\n\tcustom_auth {\n\t\tbot b {\n\t\t\t"+tc.bot+"\n\t\t}\n\t}\n}\n")
			code, out := runCaddy(t, "validate", "--config", file, "--adapter", "caddyfile")
			if code == 0 || !strings.Contains(out, tc.want) || !strings.Contains(out, tc.line) {
				t.Errorf("exit %d; output lacks %q at %s:\n%s", code, tc.want, tc.line, out)
			}
		})
	}
}
