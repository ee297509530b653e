package customauth

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/custom-auth/custom_auth/contact"
)

// assertionSigner signs the `<prefix>Assertion` JWT and serves the public keys.
type assertionSigner struct {
	signer *contact.Signer
	ttl    time.Duration
	jwks   []byte // nil for HS256, whose key is secret
}

// defaultAssertionTTL is the lifetime of an assertion when assertion_ttl is not set.
const defaultAssertionTTL = 60 * time.Second

// assertionOptions are the handler's options of the assertion.
type assertionOptions struct {
	ttl          caddy.Duration // assertion_ttl
	signKey      string         // sign_key
	signKeyFiles []string       // sign_key_file
	jwksPath     string         // jwks_path
}

// newAssertionSigner returns nil when no key is configured.
func newAssertionSigner(opts assertionOptions, repl *caddy.Replacer) (*assertionSigner, error) {
	ttl, err := durationOrDefault("assertion_ttl", opts.ttl, defaultAssertionTTL)
	if err != nil {
		return nil, err
	}
	key, err := expandConfigured("sign_key", opts.signKey, func(s string) string { return repl.ReplaceKnown(s, "") })
	if err != nil {
		return nil, err
	}
	switch {
	case key != "" && len(opts.signKeyFiles) > 0:
		return nil, fmt.Errorf("sign_key and sign_key_file: use one of them")
	case opts.jwksPath != "" && len(opts.signKeyFiles) == 0:
		return nil, fmt.Errorf("jwks_path: needs sign_key_file (an HS256 key is secret and has no public part)")
	case key != "":
		signer, err := contact.NewHMACSigner([]byte(key))
		if err != nil {
			return nil, fmt.Errorf("sign_key: %w", err)
		}
		return &assertionSigner{signer: signer, ttl: ttl}, nil
	case len(opts.signKeyFiles) > 0:
		var keys []crypto.Signer
		for _, file := range opts.signKeyFiles {
			file, err := expandConfigured("sign_key_file", file, func(s string) string { return repl.ReplaceKnown(s, "") })
			if err != nil {
				return nil, err
			}
			pemBytes, err := os.ReadFile(file)
			if err != nil {
				return nil, fmt.Errorf("sign_key_file: %w", err)
			}
			fileKeys, err := contact.ParsePrivateKeysPEM(pemBytes)
			if err != nil {
				return nil, fmt.Errorf("sign_key_file %s: %w", file, err)
			}
			keys = append(keys, fileKeys...)
		}
		signer, err := contact.NewKeySigner(keys...)
		if err != nil {
			return nil, fmt.Errorf("sign_key_file: %w", err)
		}
		jwks, err := signer.JWKS()
		if err != nil {
			return nil, fmt.Errorf("sign_key_file: %w", err)
		}
		return &assertionSigner{signer: signer, ttl: ttl, jwks: jwks}, nil
	}
	return nil, nil
}

func (a *assertionSigner) sign(botID, subject, identifyBy string, data []byte, now time.Time) (string, error) {
	return a.signer.Sign(botID, subject, identifyBy, data, now, a.ttl)
}

// checkJWKSPath accepts a request path.
func checkJWKSPath(path string) error {
	if path != "" && !strings.HasPrefix(path, "/") {
		return errors.New("jwks_path: must start with /")
	}
	return nil
}

// serveJWKS answers the public keys that verify the assertion.
func (a *assertionSigner) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err := w.Write(a.jwks)
	return err
}
