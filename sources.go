package customauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Sources is where a value comes from: one placeholder, or several of which the first
// that yields a non-empty value is used, e.g. the token from a header on some routes and
// from a query parameter on WebSocket routes. In JSON it is a string, or an array of
// strings when there are several.
type Sources []string

// UnmarshalJSON accepts a string or an array of strings.
func (s *Sources) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = Sources{one}
		return nil
	}
	var several []string
	if err := json.Unmarshal(b, &several); err != nil {
		return errors.New("must be a placeholder or an array of placeholders")
	}
	*s = several
	return nil
}

// MarshalJSON writes one source as a string, several as an array.
func (s Sources) MarshalJSON() ([]byte, error) {
	if len(s) == 1 {
		return json.Marshal(s[0])
	}
	return json.Marshal([]string(s))
}

// valueSource is one configured placeholder, such as `{http.request.header.X-Bot-Id}`,
// compiled once so that the common case, one request header, is a map lookup per
// request instead of a placeholder expansion. It also knows the part of the request it
// reads, so that a token can be removed from it.
type valueSource struct {
	// header is set when the value is exactly one request header placeholder.
	header string
	// query and cookie name the query parameter or cookie when the value is exactly
	// one `{http.request.uri.query.*}` or `{http.request.cookie.*}` placeholder.
	query, cookie string
	// template is the value otherwise, with global placeholders already expanded.
	template string
	// dynamic is true when template still holds placeholders for the request.
	dynamic bool
}

const (
	requestHeaderPlaceholder = "{http.request.header."
	queryPlaceholder         = "{http.request.uri.query."
	cookiePlaceholder        = "{http.request.cookie."
)

// placeholderArg returns NAME when v is exactly `<prefix>NAME}`.
func placeholderArg(v, prefix string) (string, bool) {
	name, ok := strings.CutPrefix(v, prefix)
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, "}")
	return name, ok && name != "" && !strings.ContainsAny(name, "{}")
}

// compileValue expands global placeholders ({env.*}, {system.*}) now and keeps request
// placeholders for later.
func compileValue(v string, repl *caddy.Replacer) valueSource {
	if name, ok := placeholderArg(v, requestHeaderPlaceholder); ok {
		return valueSource{header: textproto.CanonicalMIMEHeaderKey(name)}
	}
	src := valueSource{template: repl.ReplaceKnown(v, "")}
	src.dynamic = strings.Contains(src.template, "{")
	src.query, _ = placeholderArg(v, queryPlaceholder)
	src.cookie, _ = placeholderArg(v, cookiePlaceholder)
	return src
}

// value evaluates the source for a request.
func (s *valueSource) value(r *http.Request, repl *caddy.Replacer) string {
	switch {
	case s.header != "":
		if v := r.Header[s.header]; len(v) > 0 {
			return v[0]
		}
		return ""
	case s.query != "":
		// As Caddy's placeholder reads it, but from this request's URL, which in
		// answer mode is the original one (originalRequest).
		return strings.Join(r.URL.Query()[s.query], ",")
	case s.dynamic:
		return repl.ReplaceAll(s.template, "")
	default:
		return s.template
	}
}

// removeFrom deletes what the source reads from the request: its header, query
// parameter or cookie. Other sources are left as they are.
func (s *valueSource) removeFrom(r *http.Request) {
	switch {
	case s.header != "":
		delete(r.Header, s.header)
	case s.query != "":
		removeQueryParam(r, s.query)
	case s.cookie != "":
		removeCookie(r.Header, s.cookie)
	}
}

// removable reports whether removeFrom can take the value out of the request.
func (s *valueSource) removable() bool {
	return s.header != "" || s.query != "" || s.cookie != ""
}

// sourceList is a compiled Sources: the first source with a non-empty value wins.
type sourceList []valueSource

func compileSources(srcs Sources, repl *caddy.Replacer) sourceList {
	out := make(sourceList, len(srcs))
	for i, src := range srcs {
		out[i] = compileValue(src, repl)
	}
	return out
}

func (l sourceList) value(r *http.Request, repl *caddy.Replacer) string {
	for i := range l {
		if v := l[i].value(r, repl); v != "" {
			return v
		}
	}
	return ""
}

// removeFrom deletes every source's value from the request.
func (l sourceList) removeFrom(r *http.Request) {
	for i := range l {
		l[i].removeFrom(r)
	}
}

// removeQueryParam deletes every occurrence of a query parameter, whatever its
// spelling (`token`, `%74oken`), and keeps the rest of the query byte for byte. Both
// '&' and ';' separate parameters here, so that no reading of the query a backend may
// use still finds the parameter.
func removeQueryParam(r *http.Request, name string) {
	raw := r.URL.RawQuery
	if raw == "" || (!strings.Contains(raw, name) && !strings.ContainsRune(raw, '%') && !strings.ContainsRune(raw, '+')) {
		return
	}
	remaining := withoutQueryParam(raw, name)
	if remaining == raw {
		return
	}
	r.URL.RawQuery = remaining
	r.URL.ForceQuery = false
	if path, _, ok := strings.Cut(r.RequestURI, "?"); ok {
		r.RequestURI = path
		if remaining != "" {
			r.RequestURI += "?" + remaining
		}
	}
}

// withoutQueryParam returns a raw query without the parameter; each kept parameter
// keeps the separator that came before it.
func withoutQueryParam(raw, name string) string {
	var b strings.Builder
	sep := ""
	for {
		segment, rest := raw, ""
		i := strings.IndexAny(raw, "&;")
		if i >= 0 {
			segment, rest = raw[:i], raw[i+1:]
		}
		if queryKey(segment) != name {
			if b.Len() > 0 {
				b.WriteString(sep)
			}
			b.WriteString(segment)
		}
		if i < 0 {
			return b.String()
		}
		sep, raw = raw[i:i+1], rest
	}
}

// queryKey is the name of a query parameter as Go's url.ParseQuery reads it.
func queryKey(segment string) string {
	key, _, _ := strings.Cut(segment, "=")
	if unescaped, err := url.QueryUnescape(key); err == nil {
		return unescaped
	}
	return key
}

// removeCookie deletes a cookie from every Cookie header, keeping the others. Names
// compare case-insensitively, as Caddy's cookie placeholder reads them.
func removeCookie(h http.Header, name string) {
	values, ok := h["Cookie"]
	if !ok {
		return
	}
	remaining := values[:0:0]
	for _, line := range values {
		if line = withoutCookie(line, name); line != "" {
			remaining = append(remaining, line)
		}
	}
	if len(remaining) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = remaining
}

// withoutCookie returns a Cookie header line without the named cookie, as Go's
// http.Request.Cookies reads the line: pairs separated by ';', spaces trimmed.
func withoutCookie(line, name string) string {
	var remaining []string
	for pair := range strings.SplitSeq(line, ";") {
		pair = textproto.TrimString(pair)
		if pair == "" {
			continue
		}
		if key, _, _ := strings.Cut(pair, "="); strings.EqualFold(textproto.TrimString(key), name) {
			continue
		}
		remaining = append(remaining, pair)
	}
	return strings.Join(remaining, "; ")
}

// visitorField is one visitor-supplied field, such as user_id, and where it comes from.
type visitorField struct {
	name    string
	sources sourceList
}

func compileFields(fields map[string]Sources, repl *caddy.Replacer) []visitorField {
	out := make([]visitorField, 0, len(fields))
	for name, srcs := range fields {
		out = append(out, visitorField{name: name, sources: compileSources(srcs, repl)})
	}
	// A stable order makes the cache key and the API's request body deterministic.
	slices.SortFunc(out, func(a, b visitorField) int { return strings.Compare(a.name, b.name) })
	return out
}

// visitSources are where a request's visit is read from.
type visitSources struct {
	botID, token, origin sourceList
	fields               []visitorField
	// originalURI: the handler answers another proxy, whose subrequest carries the
	// visitor's URI in X-Original-URI.
	originalURI bool
}

func (s *visitSources) fieldNames() map[string]bool {
	names := make(map[string]bool, len(s.fields))
	for _, f := range s.fields {
		names[f.name] = true
	}
	return names
}

// fieldValue is a visitor-supplied value; only fields the visitor supplied are kept.
type fieldValue struct {
	name, value string
}

type fieldValues []fieldValue

func (fv fieldValues) get(name string) (string, bool) {
	for _, f := range fv {
		if f.name == name {
			return f.value, true
		}
	}
	return "", false
}

// visitorFields evaluates the visitor-supplied fields of a request, in name order.
func (s *visitSources) visitorFields(r *http.Request, repl *caddy.Replacer) fieldValues {
	var out fieldValues
	for _, f := range s.fields {
		if v := f.sources.value(r, repl); v != "" {
			if out == nil {
				out = make(fieldValues, 0, len(s.fields))
			}
			out = append(out, fieldValue{name: f.name, value: v})
		}
	}
	return out
}

// visit is what a request says about the visitor.
type visit struct {
	botID, origin, token string
	fields               fieldValues
}

// read reads the visit from the request, or, when the handler answers another
// proxy, from the request that proxy asks about.
func (s *visitSources) read(r *http.Request, repl *caddy.Replacer) visit {
	if s.originalURI {
		r = originalRequest(r)
	}
	return visit{
		botID:  s.botID.value(r, repl),
		origin: s.requestOrigin(r, repl),
		token:  s.token.value(r, repl),
		fields: s.visitorFields(r, repl),
	}
}

// requestOrigin is the browser's origin: the configured placeholder, else the Origin
// header when present (authoritative even when it is `null`), else Referer's origin.
func (s *visitSources) requestOrigin(r *http.Request, repl *caddy.Replacer) string {
	if len(s.origin) > 0 {
		return s.origin.value(r, repl)
	}
	if v, ok := r.Header["Origin"]; ok {
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	return r.Header.Get("Referer")
}

// originalURIHeader carries the URI of the request that another proxy asks about: its
// auth subrequest has a URI of its own (nginx: `proxy_set_header X-Original-URI
// $request_uri`).
const originalURIHeader = "X-Original-URI"

// originalRequest is the subrequest as the sources read it: with the original
// request's URI from X-Original-URI, so that a query-parameter source reads the
// visitor's query, not the auth location's. Without a valid original URI, the query
// is empty. Headers and cookies are the subrequest's, which carries the original's.
func originalRequest(r *http.Request) *http.Request {
	original, err := url.ParseRequestURI(r.Header.Get(originalURIHeader))
	if err != nil {
		original = new(url.URL)
	}
	view := *r
	view.URL = original
	return &view
}

// orDefault is the configured sources, or the default when none are.
func orDefault(srcs Sources, def string) Sources {
	if len(srcs) == 0 {
		return Sources{def}
	}
	return srcs
}

// headerPlaceholders returns the request headers a configured value reads.
func headerPlaceholders(v string) []string {
	var names []string
	for {
		_, after, ok := strings.Cut(v, requestHeaderPlaceholder)
		if !ok {
			return names
		}
		name, rest, ok := strings.Cut(after, "}")
		if !ok {
			return names
		}
		if name != "" {
			names = append(names, textproto.CanonicalMIMEHeaderKey(name))
		}
		v = rest
	}
}
