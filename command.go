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
)

// customAuthCommand is `caddy custom-auth`: test and purge.
func customAuthCommand() caddycmd.Command {
	return caddycmd.Command{
		Name: "custom-auth",
		Usage: "test --config <file> [--adapter <name>] --bot <id> --token <token> [--origin <url>] [--field <name>=<value>...] [--json]\n" +
			"  purge --bot <id> [--token <token> | --contact <value>] [--address <admin> | --config <file> [--adapter <name>]]",
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

// newPurgeCommand builds `custom-auth purge`, which exits by itself like the test
// command: 0 purged, 1 failed, 2 bad usage.
func newPurgeCommand(stdout, stderr io.Writer, exit func(int)) *cobra.Command {
	var opts purgeOptions
	cmd := &cobra.Command{
		Use:   "purge --bot <id> [--token <token> | --contact <value>] [--address <admin> | --config <file> [--adapter <name>]]",
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
