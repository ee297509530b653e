package customauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// testReport is what the test prints; with --json, and from the admin API's test
// endpoint, as this JSON.
type testReport struct {
	Config      string            `json:"config,omitempty"` // the CLI's config file
	Bot         string            `json:"bot"`
	Steps       []testStep        `json:"steps"`
	RequestBody map[string]string `json:"request_body,omitempty"`
	APIStatus   int               `json:"api_status,omitempty"`
	Status      string            `json:"status"`
	Reason      string            `json:"reason,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Error       string            `json:"error,omitempty"`
}

type testStep struct {
	Step       string  `json:"step"`
	Passed     bool    `json:"passed"`
	Detail     string  `json:"detail"`
	DurationMS float64 `json:"duration_ms,omitempty"`
}

// stepNames name the steps of the flow in the report.
var stepNames = map[step]string{stepBot: "bot", stepWhitelist: "whitelist", stepIdentity: "identity"}

// traceSteps tells each step of an outcome up to the one that decided it: the steps
// before passed, that one passed only when the visitor was verified.
func traceSteps(v visit, out outcome) []testStep {
	var steps []testStep
	for s := stepBot; s <= out.step; s++ {
		passed := s < out.step || out.status == statusVerified
		ts := testStep{Step: stepNames[s], Passed: passed, Detail: stepDetail(s, passed, v, out)}
		if s == stepIdentity && out.apiTime > 0 {
			ts.DurationMS = float64(out.apiTime.Microseconds()) / 1000
		}
		steps = append(steps, ts)
	}
	return steps
}

// stepDetail says how a step went. No URL credential and no token appears in it.
func stepDetail(s step, passed bool, v visit, out outcome) string {
	switch {
	case s == stepBot && passed:
		return out.bot.identitySource()
	case s == stepBot && out.reason == reasonDisabled:
		return "off"
	case s == stepBot:
		return string(out.reason)
	case s == stepWhitelist && !passed:
		return fmt.Sprintf("origin %q is not on the whitelist", v.origin)
	case s == stepWhitelist && !out.bot.hasWhitelist():
		return "no whitelist: any origin"
	case s == stepWhitelist:
		return fmt.Sprintf("origin %q is allowed", v.origin)
	case passed && out.apiStatus == 0: // verified by verify_jwt: no HTTP answer
		return fmt.Sprintf("%s %q", out.bot.identifyBy, out.identity.primary())
	case passed:
		return fmt.Sprintf("%s %q (HTTP %d)", out.bot.identifyBy, out.identity.primary(), out.apiStatus)
	case out.reason == reasonMissingToken:
		return "no access token"
	case out.reason == reasonRejected && out.err != nil: // verify_jwt says which check failed
		return "rejected: " + out.err.Error()
	case out.reason == reasonRejected:
		return fmt.Sprintf("rejected (HTTP %d)", out.apiStatus)
	case out.err != nil:
		return out.err.Error()
	}
	return string(out.reason)
}

// runTestReport runs steps 1–4 of the flow for one visit with the handler, as a
// request would, and reports each step. The CLI and the admin API's test endpoint
// both answer with it. A test is not a visitor: it neither reads nor stores a verdict,
// so every test asks the identity API, and it counts in no request or identity-cache
// metric. The token appears nowhere in the report.
func runTestReport(ctx context.Context, h *Handler, v visit) *testReport {
	out := h.withoutVerdictCache().identify(ctx, v)
	report := &testReport{
		Bot:       v.botID,
		Steps:     traceSteps(v, out),
		Status:    out.status.String(),
		Reason:    string(out.reason),
		APIStatus: out.apiStatus,
	}
	if out.bot != nil && !out.bot.off && out.bot.jwt == nil && v.token != "" && out.reason != reasonDomainNotAllowed {
		body, _ := requestBody(out.bot, identityRequest{token: maskToken(v.token), fields: v.fields})
		_ = json.Unmarshal(body, &report.RequestBody)
	}
	if out.err != nil {
		report.Error = out.err.Error()
	}
	if out.status == statusVerified {
		backendRequest := &http.Request{Header: http.Header{}}
		if err := h.contact.inject(backendRequest.Header, &out, h.now); err != nil {
			report.Error = err.Error()
		}
		report.Headers = make(map[string]string, len(backendRequest.Header))
		for name := range backendRequest.Header {
			report.Headers[name] = backendRequest.Header.Get(name)
		}
	}
	report.hideToken(v.token)
	return report
}

// withoutVerdictCache returns a copy of the handler that asks the identifier under
// the verdict cache: a test leaves the cache and its metrics as they were, and shows
// what the identity API says now rather than what it said minutes ago.
func (h *Handler) withoutVerdictCache() *Handler {
	probe := *h
	if ci, ok := h.identities.(*cachedIdentifier); ok {
		probe.identities = ci.next
	}
	return &probe
}

// testFields checks a test's visitor fields against those the handler defines, and
// puts them as a request's are: in name order, an empty value not supplied.
func testFields(h *Handler, given fieldValues) (fieldValues, error) {
	var fields fieldValues
	for _, f := range given {
		if !slices.ContainsFunc(h.visits.fields, func(vf visitorField) bool { return vf.name == f.name }) {
			return nil, fmt.Errorf("%s: the config defines no such field", f.name)
		}
		if f.value != "" {
			fields = append(fields, f)
		}
	}
	slices.SortStableFunc(fields, func(a, b fieldValue) int { return strings.Compare(a.name, b.name) })
	return fields, nil
}

// knowsBot reports whether the handler has settings for a bot: listed, `bot *`, or
// through bots_url (also when fetching them failed).
func (h *Handler) knowsBot(ctx context.Context, id string) bool {
	_, reason := h.lookupBot(ctx, id)
	return reason != reasonUnknownBot
}

// hideToken replaces the token wherever the report could show it: an error or a step
// may quote a value that the visitor sent or the API answered, and that value may be
// the token, verbatim, quoted or percent-encoded.
func (r *testReport) hideToken(token string) {
	if token == "" {
		return
	}
	hide := tokenHider(token)
	r.Error = hide(r.Error)
	for i := range r.Steps {
		r.Steps[i].Detail = hide(r.Steps[i].Detail)
	}
	for _, values := range []map[string]string{r.RequestBody, r.Headers} {
		for name, value := range values {
			values[name] = hide(value)
		}
	}
}

// writeJSON writes the report as the JSON of `--json` and of the admin API.
func (r *testReport) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *testReport) print(w io.Writer, asJSON bool) {
	if asJSON {
		_ = r.writeJSON(w)
		return
	}
	fmt.Fprintf(w, "Custom Authentication test of bot %q (%s)\n\n", r.Bot, r.Config)
	for i, s := range r.Steps {
		mark := "ok  "
		if !s.Passed {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %d. %-9s %s  %s  (%.1f ms)\n", i+1, s.Step, mark, s.Detail, s.DurationMS)
	}
	if r.RequestBody != nil {
		var body strings.Builder
		enc := json.NewEncoder(&body)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(r.RequestBody)
		fmt.Fprintf(w, "\nRequest body sent to the identity API:\n  %s", body.String())
	}
	if r.APIStatus != 0 {
		fmt.Fprintf(w, "Identity API answered: HTTP %d\n", r.APIStatus)
	}
	if r.Status == "verified" {
		fmt.Fprintf(w, "\nResult: verified\n\nHeaders the chat backend receives:\n")
		for _, name := range slices.Sorted(maps.Keys(r.Headers)) {
			fmt.Fprintf(w, "  %s: %s\n", name, r.Headers[name])
		}
		return
	}
	fmt.Fprintf(w, "\nResult: fallback (reason: %s)\n", r.Reason)
	if r.Error != "" {
		fmt.Fprintf(w, "Error: %s\n", r.Error)
	}
	fmt.Fprintln(w, "The request would pass on without contact headers; the backend asks the visitor.")
}
