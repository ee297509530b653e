package customauth

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/custom-auth/custom_auth/contact"
)

// A configured URL may carry credentials: user information (a password), or a key in
// its query. Whatever prints such a URL, or an error about it, goes through this file:
// redactURL for the URL itself, redactURLError for an error of the URL parser or the
// HTTP client, and urlSecrets for a client that may quote the URL's secrets in its
// messages.

// redacted stands where a secret was.
const redacted = "REDACTED"

// redactURL returns a URL fit to print: its user information and its query are
// REDACTED. An unparsable URL is printed as "<invalid URL>", since nothing tells which
// part of it is the password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.RawQuery != "" {
		u.RawQuery = redacted
	}
	return u.String()
}

// quoted matches a Go-quoted string, as the URL parser quotes the part of a URL it
// could not read.
var quoted = regexp.MustCompile(`\s*"(?:[^"\\]|\\.)*"`)

// redactURLError drops the URL from an error of the URL parser or the HTTP client
// (a *url.Error): it may carry credentials, and the error is printed next to what
// the URL is for anyway. A parse error quotes the part of the URL it could not read;
// that part is dropped too where it may be a secret: `invalid port ":hunter2" after
// host` for a URL whose host was left out after the password.
func redactURLError(err error) error {
	urlErr, ok := errors.AsType[*url.Error](err)
	switch {
	case !ok:
		return err
	case urlErr.Op != "parse":
		return urlErr.Err
	}
	secrets := secretsOf(urlErr.URL)
	return errors.New(quoted.ReplaceAllStringFunc(urlErr.Err.Error(), func(q string) string {
		part, err := strconv.Unquote(strings.TrimSpace(q))
		if err != nil || secrets.overlap(part) {
			return ""
		}
		return q
	}))
}

// urlSecrets is what of a URL must never be printed: its password (also as
// query-escaped), its user information as written, and its query.
type urlSecrets []string

func secretsOf(raw string) urlSecrets {
	u, err := url.Parse(raw)
	if err != nil {
		return roughSecretsOf(raw)
	}
	var secrets urlSecrets
	if pw, ok := u.User.Password(); ok && pw != "" {
		secrets = append(secrets, pw, url.QueryEscape(pw))
	}
	if u.User != nil {
		secrets = append(secrets, u.User.String())
	}
	if u.RawQuery != "" {
		secrets = append(secrets, u.RawQuery)
	}
	return secrets
}

// roughSecretsOf finds the secrets of a URL the parser refused: what comes before its
// last @ (or its whole host part, when it has none: it may be `user:password` with
// the host left out), and what comes after its ?.
func roughSecretsOf(raw string) urlSecrets {
	_, rest, found := strings.Cut(raw, "://")
	if !found {
		rest = raw
	}
	rest, query, _ := strings.Cut(rest, "?")
	userinfo, _, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		userinfo = rest[:at]
	}
	return urlSecrets{userinfo, query}
}

// overlap reports whether part holds a secret or is a piece of one.
func (s urlSecrets) overlap(part string) bool {
	for _, secret := range s {
		if secret != "" && (strings.Contains(secret, part) || strings.Contains(part, secret)) {
			return true
		}
	}
	return false
}

// scrub is redactURLError, with every secret that is left in the message REDACTED,
// should a client ever quote one.
func (s urlSecrets) scrub(err error) error {
	if err == nil {
		return nil
	}
	err = redactURLError(err)
	msg := err.Error()
	for _, secret := range s {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, redacted)
		}
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// maskToken is what shows of a token where one would be shown (the test report): its
// size.
func maskToken(token string) string {
	return fmt.Sprintf("<hidden, %d bytes>", len(token))
}

// tokenHider masks a token wherever a text could show it: verbatim, Go-quoted, or
// encoded as a header value.
func tokenHider(token string) func(string) string {
	mask := maskToken(token)
	q := strconv.Quote(token)
	return strings.NewReplacer(token, mask, q[1:len(q)-1], mask, contact.EncodeValue(token), mask).Replace
}
