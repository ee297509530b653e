package customauth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// The secrets of the URLs below: none of them may appear in what is printed.
var urlSecretWords = []string{"alice", "hunter2", "k3y-value", "h%zz2", "zz2", ":hun"}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ name, raw, want string }{
		{"plain", "https://api.example.com/ca", "https://api.example.com/ca"},
		{"user info", "https://alice@api.example.com/ca", "https://REDACTED@api.example.com/ca"},
		{"password", "https://alice:hunter2@api.example.com/ca", "https://REDACTED@api.example.com/ca"},
		{"query", "https://api.example.com/ca?api_key=k3y-value", "https://api.example.com/ca?REDACTED"},
		{"all", "redis://alice:hunter2@cache:6379/0?key=k3y-value", "redis://REDACTED@cache:6379/0?REDACTED"},
		{"unparsable", "https://alice:h%zz2@api.example.com", "<invalid URL>"},
		{"host left out after the password", "https://alice:hunter2", "<invalid URL>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := redactURL(tc.raw); got != tc.want {
				t.Errorf("redactURL(%q) = %q, want %q", tc.raw, got, tc.want)
			}
		})
	}
}

// TestURLErrorsNeverShowSecrets: the errors of checkURL, of the URL parser and of a
// client that quotes the URL never show its user, password or query.
func TestURLErrorsNeverShowSecrets(t *testing.T) {
	clientErr := func(raw string) error {
		return &url.Error{Op: "Get", URL: raw, Err: errors.New("connection refused")}
	}
	quoting := func(raw string) error {
		return fmt.Errorf("AUTH %s failed for %s", secretsOf(raw)[0], url.QueryEscape("hunter2"))
	}
	for _, tc := range []struct {
		name, raw string
		err       func(raw string) error
		want      string
	}{
		{"checkURL: unparsable escape", "https://alice:h%zz2@api.example.com", checkURL, "invalid URL: invalid URL escape"},
		{"checkURL: host left out", "https://alice:hunter2", checkURL, "invalid URL: invalid port after host"},
		{"checkURL: a / in the password", "https://alice:hun/ter2@api.example.com", checkURL, "invalid URL: invalid port after host"},
		{"checkURL: bad port", "https://alice:hunter2@api.example.com:port", checkURL, `invalid URL: invalid port ":port" after host`},
		{"checkURL: bad userinfo", "https://alice:hun ter2@api.example.com", checkURL, "invalid URL: net/url: invalid userinfo"},
		{"checkURL: wrong scheme", "ftp://alice:hunter2@files.example.com/?k=k3y-value", checkURL, `"ftp://REDACTED@files.example.com/?REDACTED" must be an absolute http or https URL`},
		{"checkURL: no host", "https://alice:hunter2@/ca?k=k3y-value", checkURL, `"https://REDACTED@/ca?REDACTED" has no host`},
		{"client error", "https://alice:hunter2@api.example.com/ca?k=k3y-value", func(raw string) error { return redactURLError(clientErr(raw)) }, "connection refused"},
		{"client quoting the password", "redis://alice:hunter2@cache:6379", func(raw string) error { return secretsOf(raw).scrub(quoting(raw)) }, "AUTH REDACTED failed for REDACTED"},
		{"client quoting the URL", "redis://alice:hunter2@cache:6379", func(raw string) error { return secretsOf(raw).scrub(clientErr(raw)) }, "connection refused"},
		{"unparsable, scrubbed", "redis://alice:hunter2", func(raw string) error { _, err := url.Parse(raw); return secretsOf(raw).scrub(err) }, "invalid port after host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(tc.raw)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			for _, secret := range urlSecretWords {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows %q", err, secret)
				}
			}
		})
	}
}

// TestScrubKeepsOtherErrors: an error that quotes no secret is returned as it is, so
// that errors.Is still sees what it wraps.
func TestScrubKeepsOtherErrors(t *testing.T) {
	err := fmt.Errorf("reading: %w", errTooLarge)
	if got := secretsOf("redis://alice:hunter2@cache").scrub(err); got != err {
		t.Errorf("scrub(%v) = %v, want it unchanged", err, got)
	}
	if got := urlSecrets(nil).scrub(nil); got != nil {
		t.Errorf("scrub(nil) = %v", got)
	}
}
