package customauth

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/net/http/httpguts"
)

// expandConfigured expands global placeholders in a configured value. A value that is
// written but expands to nothing, such as an unset {env.X}, is an error, and so is a
// placeholder in it that does (`Bearer {env.X}`): a secret or a URL that silently
// disappears is never accepted.
func expandConfigured(option, raw string, expand func(string) string) (string, error) {
	v := expand(raw)
	if raw != "" && strings.TrimSpace(v) == "" {
		return "", fmt.Errorf("%s: %q expands to an empty value", option, raw)
	}
	for _, p := range placeholderPattern.FindAllString(raw, -1) {
		if expand(p) == "" {
			return "", fmt.Errorf("%s: %s in %q expands to an empty value", option, p, raw)
		}
	}
	return v, nil
}

// placeholderPattern finds the placeholders of a value, such as {env.CA_TOKEN}.
var placeholderPattern = regexp.MustCompile(`\{[^{}\s]+\}`)

// checkURL accepts absolute http and https URLs with a host. Its errors show the URL
// redacted: it may carry credentials.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL: %v", redactURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must be an absolute http or https URL", redactURL(raw))
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host", redactURL(raw))
	}
	return nil
}

// durationOrDefault checks a duration that must not be negative; zero means the default.
func durationOrDefault(name string, d caddy.Duration, def time.Duration) (time.Duration, error) {
	switch {
	case d < 0:
		return 0, fmt.Errorf("%s: must not be negative", name)
	case d == 0:
		return def, nil
	}
	return time.Duration(d), nil
}

// optionalDuration checks a duration that may be zero (off); absent means the default.
func optionalDuration(name string, d *caddy.Duration, def time.Duration) (time.Duration, error) {
	switch {
	case d == nil:
		return def, nil
	case *d < 0:
		return 0, fmt.Errorf("%s: must not be negative", name)
	}
	return time.Duration(*d), nil
}

// checkHeaderName refuses a configured header name that is not a valid field name.
func checkHeaderName(name string) error {
	if !httpguts.ValidHeaderFieldName(name) {
		return fmt.Errorf("invalid header name %q", name)
	}
	return nil
}

// headerValues checks configured request headers and expands their values.
func headerValues(in map[string]string, expand func(string) string) (http.Header, error) {
	out := make(http.Header, len(in))
	for name, raw := range in {
		if err := checkHeaderName(name); err != nil {
			return nil, err
		}
		value, err := expandConfigured(name, raw, expand)
		if err != nil {
			return nil, err
		}
		if value == "" || !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("header %s: the value is empty or has a control character", name)
		}
		out.Set(name, value)
	}
	return out, nil
}
