package customauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custom-auth/custom_auth/contact"
)

// customAuthCommand is `caddy custom-auth`: test and purge.
func customAuthCommand() caddycmd.Command {
	return caddycmd.Command{
		Name: "custom-auth",
		Usage: "test --config <file> [--adapter <name>] --bot <id> --token <token> [--origin <url>] [--field <name>=<value>...] [--json]\n" +
			"  purge --bot <id> [--token <token> | --contact <value>] [--address <admin>]",
		Short: "Tests Custom Authentication against the real identity API, or purges cached verdicts",
		Long: `
The test subcommand runs the steps of Custom Authentication for one visitor, exactly as
the server would, against the real APIs of the config: it finds the bot (in the first
custom_auth handler that knows it), checks the origin against its whitelist, calls its
identity API, and prints each step, the request sent (token hidden), and the headers the
chat backend would receive.

Exit status: 0 verified, 1 fallback (the reason is printed), 2 bad usage or config.

The purge subcommand asks the running Caddy, through its admin API, to remove cached
verdicts: a token's, every token's of a contact (its primary-key value), or all of a
bot's; with shared_cache, from every gateway of the fleet. The admin address is
--address, else the one of --config, else Caddy's default.

Exit status: 0 purged, 1 the purge failed, 2 bad usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(newTestCommand(os.Stdout, os.Stderr, os.Exit))
			cmd.AddCommand(newPurgeCommand(os.Stdout, os.Stderr, os.Exit))
		},
	}
}

// Exit statuses of `caddy custom-auth test` and `purge`.
const (
	exitVerified = 0
	exitFallback = 1
	exitUsage    = 2

	exitPurged      = 0
	exitPurgeFailed = 1
)

// newTestCommand builds `custom-auth test`. Caddy exits 1 on any command error, so
// this command exits by itself to keep 1 for a fallback and 2 for bad usage.
func newTestCommand(stdout, stderr io.Writer, exit func(int)) *cobra.Command {
	var opts testOptions
	cmd := &cobra.Command{
		Use:   "test --config <file> --bot <id> --token <token> [--origin <url>] [--field <name>=<value>...] [--json]",
		Short: "Runs Custom Authentication for one visitor and prints each step",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exit(runTest(cmd.Context(), opts, stdout, stderr))
			return nil
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceUsage = true
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(stderr, "custom-auth test: %v\n%s", err, c.UsageString())
		exit(exitUsage)
		return err
	})
	flags := cmd.Flags()
	flags.StringVarP(&opts.config, "config", "c", "", "Configuration file (required)")
	flags.StringVarP(&opts.adapter, "adapter", "a", "", "Name of config adapter to apply")
	flags.StringVar(&opts.bot, "bot", "", "Bot id (required)")
	flags.StringVar(&opts.token, "token", "", "The visitor's access token")
	flags.StringVar(&opts.origin, "origin", "", "The page's origin, e.g. https://shop.example.com")
	flags.StringArrayVar(&opts.fields, "field", nil, "A visitor-supplied field, e.g. user_id=2 (repeatable)")
	flags.BoolVar(&opts.json, "json", false, "Print the result as JSON")
	return cmd
}

type testOptions struct {
	config, adapter, bot, token, origin string
	fields                              []string
	json                                bool
}

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

func runTest(ctx context.Context, opts testOptions, stdout, stderr io.Writer) int {
	if ctx == nil {
		ctx = context.Background()
	}
	usage := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "custom-auth test: "+format+"\n", args...)
		return exitUsage
	}
	if opts.config == "" {
		return usage("--config is required")
	}
	if opts.bot == "" {
		return usage("--bot is required")
	}
	var given fieldValues
	for _, f := range opts.fields {
		name, value, ok := strings.Cut(f, "=")
		if !ok || name == "" {
			return usage("--field %q: want name=value", f)
		}
		given = append(given, fieldValue{name: name, value: value})
	}

	cfgJSON, _, _, err := caddycmd.LoadConfig(opts.config, opts.adapter)
	if err != nil {
		return usage("loading %s: %v", opts.config, err)
	}
	configs := customAuthConfigs(cfgJSON)
	if len(configs) == 0 {
		return usage("%s has no custom_auth handler", opts.config)
	}

	caddyCtx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	defer cancel()
	h, err := handlerForBot(caddyCtx, configs, opts.bot)
	if err != nil {
		return usage("%v", err)
	}
	defer h.Cleanup()
	fields, err := testFields(h, given)
	if err != nil {
		return usage("--field %v", err)
	}

	report := runTestReport(caddyCtx, h, visit{botID: opts.bot, origin: opts.origin, token: opts.token, fields: fields})
	report.Config = opts.config
	report.print(stdout, opts.json)
	if report.Status == statusVerified.String() {
		return exitVerified
	}
	return exitFallback
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
		if err := h.contact.inject(backendRequest.Header, &out, h.now()); err != nil {
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

// customAuthConfigs returns the JSON of every custom_auth handler in a config, in
// the config's order (servers by name).
func customAuthConfigs(cfgJSON []byte) []json.RawMessage {
	var found []json.RawMessage
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		raw = json.RawMessage(strings.TrimSpace(string(raw)))
		if len(raw) == 0 {
			return
		}
		switch raw[0] {
		case '{':
			var obj map[string]json.RawMessage
			if json.Unmarshal(raw, &obj) != nil {
				return
			}
			if string(obj["handler"]) == `"custom_auth"` {
				found = append(found, raw)
				return
			}
			for _, key := range slices.Sorted(maps.Keys(obj)) {
				walk(obj[key])
			}
		case '[':
			var arr []json.RawMessage
			if json.Unmarshal(raw, &arr) != nil {
				return
			}
			for _, item := range arr {
				walk(item)
			}
		}
	}
	walk(cfgJSON)
	return found
}

// handlerForBot provisions the first handler that knows the bot: listed, `bot *`, or
// through bots_url.
func handlerForBot(ctx caddy.Context, configs []json.RawMessage, botID string) (*Handler, error) {
	var errs []error
	for i, raw := range configs {
		h := &Handler{logger: zap.NewNop()}
		if err := json.Unmarshal(raw, h); err != nil {
			errs = append(errs, fmt.Errorf("custom_auth handler %d: %w", i+1, err))
			continue
		}
		if err := h.Provision(ctx); err != nil {
			h.Cleanup()
			errs = append(errs, fmt.Errorf("custom_auth handler %d: %w", i+1, err))
			continue
		}
		if h.knowsBot(ctx, botID) {
			return h, nil
		}
		h.Cleanup()
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return nil, fmt.Errorf("no custom_auth handler knows bot %q", botID)
}

// maskToken hides the token in what the test prints.
func maskToken(token string) string {
	return fmt.Sprintf("<hidden, %d bytes>", len(token))
}

// hideToken replaces the token wherever the report could show it: an error or a step
// may quote a value that the visitor sent or the API answered, and that value may be
// the token, verbatim, quoted or percent-encoded.
func (r *testReport) hideToken(token string) {
	if token == "" {
		return
	}
	mask := maskToken(token)
	quoted := strconv.Quote(token)
	hide := strings.NewReplacer(token, mask, quoted[1:len(quoted)-1], mask, contact.EncodeValue(token), mask).Replace
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

// newPurgeCommand builds `custom-auth purge`, which exits by itself like the test
// command: 0 purged, 1 failed, 2 bad usage.
func newPurgeCommand(stdout, stderr io.Writer, exit func(int)) *cobra.Command {
	var opts purgeOptions
	cmd := &cobra.Command{
		Use:   "purge --bot <id> [--token <token> | --contact <value>] [--address <admin>]",
		Short: "Removes cached verdicts from the running gateway and, with shared_cache, its fleet",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.tokenGiven = cmd.Flags().Changed("token")
			opts.contactGiven = cmd.Flags().Changed("contact")
			exit(runPurge(opts, stdout, stderr))
			return nil
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceUsage = true
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(stderr, "custom-auth purge: %v\n%s", err, c.UsageString())
		exit(exitUsage)
		return err
	})
	flags := cmd.Flags()
	flags.StringVar(&opts.bot, "bot", "", "Bot id (required)")
	flags.StringVar(&opts.token, "token", "", "Purge this access token's verdicts")
	flags.StringVar(&opts.contact, "contact", "", "Purge every verdict of this contact (its primary-key value, e.g. the id)")
	flags.StringVar(&opts.address, "address", "", "The address of Caddy's admin API")
	flags.StringVarP(&opts.config, "config", "c", "", "Configuration file whose admin address to use")
	flags.StringVarP(&opts.adapter, "adapter", "a", "", "Name of config adapter to apply")
	return cmd
}

type purgeOptions struct {
	bot, token, contact, address, config, adapter string
	tokenGiven, contactGiven                      bool
}

func runPurge(opts purgeOptions, stdout, stderr io.Writer) int {
	usage := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "custom-auth purge: "+format+"\n", args...)
		return exitUsage
	}
	req := purgeRequest{Bot: opts.bot}
	if opts.tokenGiven {
		req.Token = &opts.token
	}
	if opts.contactGiven {
		req.Contact = &opts.contact
	}
	if err := req.check(); err != nil {
		return usage("%v", strings.NewReplacer(`"bot"`, "--bot", `"token"`, "--token", `"contact"`, "--contact").Replace(err.Error()))
	}
	address, err := caddycmd.DetermineAdminAPIAddress(opts.address, nil, opts.config, opts.adapter)
	if err != nil {
		return usage("finding the admin API: %v", err)
	}
	body, _ := json.Marshal(req)
	resp, err := caddycmd.AdminAPIRequest(address, http.MethodPost, "/custom-auth/purge", nil, strings.NewReader(string(body)))
	if err != nil {
		fmt.Fprintf(stderr, "custom-auth purge: %v\n", err)
		return exitPurgeFailed
	}
	defer resp.Body.Close()
	var result purgeResult
	if err := json.NewDecoder(resp.Body).Decode(&result); err != nil {
		fmt.Fprintf(stderr, "custom-auth purge: reading the answer: %v\n", err)
		return exitPurgeFailed
	}
	what := "every verdict of bot " + strconv.Quote(opts.bot)
	switch {
	case opts.tokenGiven:
		what = "the token's verdicts"
	case opts.contactGiven:
		what = fmt.Sprintf("the verdicts of contact %q", opts.contact)
	}
	fmt.Fprintf(stdout, "Purged %s: %d removed here by key, any other hidden by a purge mark.\n", what, result.Purged)
	if result.Gateways != nil {
		fmt.Fprintf(stdout, "%d gateways of the fleet confirmed.\n", *result.Gateways)
	}
	return exitPurged
}
