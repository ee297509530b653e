package contact

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is the `iss` of every assertion.
const Issuer = "custom_auth"

// MinHMACKeySize is the shortest HS256 key accepted.
const MinHMACKeySize = 32

// DefaultTTL is how long an assertion is valid when Sign is given no TTL.
const DefaultTTL = 60 * time.Second

// Claims are the claims of the assertion.
type Claims struct {
	Issuer    string           `json:"iss"`
	Audience  string           `json:"aud"` // the bot id
	Subject   string           `json:"sub"` // the primary-key value, as the API spelled it
	IssuedAt  *jwt.NumericDate `json:"iat"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	// NotBefore is checked when present; the gateway does not set it.
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	ID        string           `json:"jti"`
	// IdentifyBy is the primary key's name: "id", "email" or "phone_number".
	IdentifyBy string `json:"idb"`
	// Data is the identity API's data object, exactly as the API sent it.
	Data json.RawMessage `json:"contact"`
}

// Contact returns the typed contact the claims carry.
func (c *Claims) Contact() (*Contact, error) {
	var d Data
	if err := json.Unmarshal(c.Data, &d); err != nil {
		return nil, fmt.Errorf("contact: the contact claim is not an object: %w", err)
	}
	return d.Contact(c.IdentifyBy)
}

// Claims implements jwt.Claims, so that golang-jwt validates the times, issuer and
// audience.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *Claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *Claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *Claims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings{c.Audience}, nil }

// Signer signs assertions: HS256 with a shared key, or EdDSA/ES256 with private keys
// whose public halves are published as a JWKS.
type Signer struct {
	method jwt.SigningMethod
	key    any
	kid    string
	jwks   []JWK
}

// NewHMACSigner signs with HS256. The key must have at least MinHMACKeySize bytes.
func NewHMACSigner(key []byte) (*Signer, error) {
	if len(key) < MinHMACKeySize {
		return nil, fmt.Errorf("an HS256 key must be at least %d bytes, not %d", MinHMACKeySize, len(key))
	}
	return &Signer{method: jwt.SigningMethodHS256, key: key}, nil
}

// NewKeySigner signs with the first key (Ed25519: EdDSA; ECDSA P-256: ES256) and
// publishes the public keys of all, so that tokens signed with a key being retired
// still verify.
func NewKeySigner(keys ...crypto.Signer) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no private key")
	}
	s := new(Signer)
	for i, key := range keys {
		jwk, method, err := publicJWK(key.Public())
		if err != nil {
			return nil, err
		}
		if i == 0 {
			s.method, s.key, s.kid = method, key, jwk.KeyID
		}
		s.jwks = append(s.jwks, jwk)
	}
	return s, nil
}

// ParsePrivateKeysPEM reads every private key of a PEM file (PKCS #8, or SEC 1 "EC
// PRIVATE KEY"). Only Ed25519 and ECDSA P-256 keys are accepted.
func ParsePrivateKeysPEM(data []byte) ([]crypto.Signer, error) {
	var keys []crypto.Signer
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue // certificates, parameters and the like
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
		}
		switch k := key.(type) {
		case ed25519.PrivateKey:
			keys = append(keys, k)
		case *ecdsa.PrivateKey:
			if k.Curve != elliptic.P256() {
				return nil, fmt.Errorf("ECDSA key on %s: only P-256 (ES256) is supported", k.Curve.Params().Name)
			}
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("%T keys are not supported: use Ed25519 or ECDSA P-256", key)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no private key in the PEM data")
	}
	return keys, nil
}

// Sign issues an assertion for a verified contact of bot botID: subject is the
// primary key's value as the API spelled it, data the API's data object as it came. A
// ttl of zero or less means DefaultTTL.
func (s *Signer) Sign(botID, subject, identifyBy string, data json.RawMessage, now time.Time, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims := &Claims{
		Issuer:     Issuer,
		Audience:   botID,
		Subject:    subject,
		IssuedAt:   jwt.NewNumericDate(now),
		ExpiresAt:  jwt.NewNumericDate(now.Add(ttl)),
		ID:         base64.RawURLEncoding.EncodeToString(jti),
		IdentifyBy: identifyBy,
		Data:       data,
	}
	token := jwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		token.Header["kid"] = s.kid
	}
	signingString, err := token.SigningString()
	if err != nil {
		return "", err
	}
	signature, err := s.method.Sign(signingString, s.key)
	if err != nil {
		return "", err
	}
	if s.method == jwt.SigningMethodES256 && isHighS(signature) {
		// crypto/ecdsa returns either of the two valid values of s; verifiers accept
		// only the low one.
		mirrorS(signature)
	}
	return signingString + "." + token.EncodeSegment(signature), nil
}

// p256HalfOrder is N/2 for P-256. An ES256 signature (r, s) has a twin, (r, N−s), that
// verifies too; of the two, only the one with s ≤ N/2 is accepted, so that an
// assertion has a single valid form.
var p256HalfOrder = new(big.Int).Rsh(elliptic.P256().Params().N, 1)

// isHighS reports whether the s half of an ES256 signature (r || s, 32 bytes each) is
// above N/2.
func isHighS(signature []byte) bool {
	if len(signature) != 64 {
		return false // not ES256: golang-jwt refuses it before
	}
	return new(big.Int).SetBytes(signature[32:]).Cmp(p256HalfOrder) > 0
}

// mirrorS replaces s by N−s in an ES256 signature.
func mirrorS(signature []byte) {
	s := new(big.Int).SetBytes(signature[32:])
	s.Sub(elliptic.P256().Params().N, s).FillBytes(signature[32:])
}

// JWKS returns the JSON Web Key Set of the public keys; an HS256 signer has none.
func (s *Signer) JWKS() ([]byte, error) {
	if len(s.jwks) == 0 {
		return nil, errors.New("an HS256 key is secret: there is no public key to publish")
	}
	return json.Marshal(struct {
		Keys []JWK `json:"keys"`
	}{s.jwks})
}

// JWK is a public key in JSON Web Key form.
type JWK struct {
	KeyType   string `json:"kty"`
	Curve     string `json:"crv"`
	X         string `json:"x"`
	Y         string `json:"y,omitempty"`
	KeyID     string `json:"kid"`
	Algorithm string `json:"alg"`
	Use       string `json:"use"`
}

// publicJWK describes a public key; its kid is the RFC 7638 thumbprint.
func publicJWK(pub crypto.PublicKey) (JWK, jwt.SigningMethod, error) {
	var jwk JWK
	var method jwt.SigningMethod
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case ed25519.PublicKey:
		jwk = JWK{KeyType: "OKP", Curve: "Ed25519", X: b64(k), Algorithm: "EdDSA"}
		method = jwt.SigningMethodEdDSA
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return jwk, nil, errors.New("only P-256 ECDSA keys are supported")
		}
		ecdhKey, err := k.ECDH()
		if err != nil {
			return jwk, nil, err
		}
		point := ecdhKey.Bytes() // 0x04 || X || Y
		jwk = JWK{KeyType: "EC", Curve: "P-256", X: b64(point[1:33]), Y: b64(point[33:]), Algorithm: "ES256"}
		method = jwt.SigningMethodES256
	default:
		return jwk, nil, fmt.Errorf("%T keys are not supported: use Ed25519 or ECDSA P-256", pub)
	}
	// RFC 7638: the required members, in lexicographic order, without spaces.
	var thumbprint string
	if jwk.KeyType == "OKP" {
		thumbprint = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q}`, jwk.Curve, jwk.KeyType, jwk.X)
	} else {
		thumbprint = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q,"y":%q}`, jwk.Curve, jwk.KeyType, jwk.X, jwk.Y)
	}
	sum := sha256.Sum256([]byte(thumbprint))
	jwk.KeyID = b64(sum[:])
	jwk.Use = "sig"
	return jwk, method, nil
}
