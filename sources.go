package customauth

import (
	"net/http"
	"net/textproto"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// valueSource is a configured value, such as `{http.request.header.X-Bot-Id}`, compiled
// once so that the common case, one request header, is a map lookup per request
// instead of a placeholder expansion.
type valueSource struct {
	// header is set when the value is exactly one request header placeholder.
	header string
	// template is the value otherwise, with global placeholders already expanded.
	template string
	// dynamic is true when template still holds placeholders for the request.
	dynamic bool
}

const requestHeaderPlaceholder = "{http.request.header."

// compileValue expands global placeholders ({env.*}, {system.*}) now and keeps request
// placeholders for later.
func compileValue(v string, repl *caddy.Replacer) valueSource {
	if name, ok := strings.CutPrefix(v, requestHeaderPlaceholder); ok {
		if name, ok = strings.CutSuffix(name, "}"); ok && name != "" && !strings.ContainsAny(name, "{}") {
			return valueSource{header: textproto.CanonicalMIMEHeaderKey(name)}
		}
	}
	v = repl.ReplaceKnown(v, "")
	return valueSource{template: v, dynamic: strings.Contains(v, "{")}
}

func (s valueSource) isZero() bool { return s == valueSource{} }

// value evaluates the source for a request.
func (s valueSource) value(r *http.Request, repl *caddy.Replacer) string {
	switch {
	case s.header != "":
		if v := r.Header[s.header]; len(v) > 0 {
			return v[0]
		}
		return ""
	case s.dynamic:
		return repl.ReplaceAll(s.template, "")
	default:
		return s.template
	}
}

// visitorField is one visitor-supplied field, such as user_id, and where it comes from.
type visitorField struct {
	name   string
	source valueSource
}

func compileFields(fields map[string]string, repl *caddy.Replacer) []visitorField {
	out := make([]visitorField, 0, len(fields))
	for name, src := range fields {
		out = append(out, visitorField{name: name, source: compileValue(src, repl)})
	}
	// A stable order makes the cache key and the API's request body deterministic.
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (h *Handler) fieldNames() map[string]bool {
	names := make(map[string]bool, len(h.fields))
	for _, f := range h.fields {
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
func (h *Handler) visitorFields(r *http.Request, repl *caddy.Replacer) fieldValues {
	var out fieldValues
	for _, f := range h.fields {
		if v := f.source.value(r, repl); v != "" {
			if out == nil {
				out = make(fieldValues, 0, len(h.fields))
			}
			out = append(out, fieldValue{name: f.name, value: v})
		}
	}
	return out
}
