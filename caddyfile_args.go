package customauth

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/custom-auth/custom_auth/contact"
)

// How a custom_auth block is read: its subdirectives one by one, each argument by its
// reader, which checks it as Provision will, so that a mistake is refused with its
// line. The blocks themselves are in caddyfile.go.

// block is the subdirectives a Caddyfile block accepts: name names the block in errors
// (none for the handler's). A subdirective is added to once or repeatable, and as a
// case of the block's parser.
type block struct {
	name             string
	once, repeatable []string
}

// errNoCase is what a block's parser returns for a subdirective that is in the block's
// list but has no case.
var errNoCase = errors.New("the block lists this subdirective but does not read it")

// eachSubdirective calls parse with the name of each subdirective in the block that
// follows, the dispenser on that name. It refuses a subdirective the block does not
// accept, naming the accepted one it is closest to, and one given twice that is not
// repeatable.
func eachSubdirective(d *caddyfile.Dispenser, b block, parse func(name string) error) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		switch {
		case !slices.Contains(b.once, name) && !slices.Contains(b.repeatable, name):
			return d.Errf("unrecognized %s '%s'%s", strings.TrimSpace(b.name+" subdirective"), name, b.didYouMean(name))
		case seen[name] && !slices.Contains(b.repeatable, name):
			return d.Errf("%s: given twice", name)
		}
		seen[name] = true
		if err := parse(name); err != nil {
			return err
		}
	}
	return nil
}

// didYouMean suggests the subdirective of the block closest to a mistyped one, when
// it is at most two edits away.
func (b block) didYouMean(typed string) string {
	best, bestDistance := "", 3
	for _, name := range slices.Concat(b.once, b.repeatable) {
		if distance := levenshtein.ComputeDistance(typed, name); distance < bestDistance {
			best, bestDistance = name, distance
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean '%s'?", best)
}

// laterChecks are checks of what may be declared further down the block. They run
// once it is read, and an error names the line each was added at.
type laterChecks []laterCheck

type laterCheck struct {
	at    *caddyfile.Dispenser // on the token the check was added at
	check func(h *Handler, at *caddyfile.Dispenser) error
}

func (l *laterChecks) add(d *caddyfile.Dispenser, check func(h *Handler, at *caddyfile.Dispenser) error) {
	at := caddyfile.NewDispenser([]caddyfile.Token{d.Token()})
	at.Next()
	*l = append(*l, laterCheck{at: at, check: check})
}

func (l laterChecks) run(h *Handler) error {
	for _, c := range l {
		if err := c.check(h, c.at); err != nil {
			return c.at.WrapErr(err)
		}
	}
	return nil
}

// warnAt logs a warning about the Caddyfile at the dispenser's line, as Caddy logs its
// adapter's warnings; the config is not refused for it.
func warnAt(d *caddyfile.Dispenser, msg string, fields ...zap.Field) {
	caddyfileLogger().Warn(msg, append(fields, zap.String("file", d.File()), zap.Int("line", d.Line()))...)
}

// caddyfileLogger is where warnAt writes; tests replace it.
var caddyfileLogger = caddy.Log

// noArgs refuses arguments where a subdirective takes none.
func noArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// flagArg reads a subdirective that takes no argument and turns its setting on.
func flagArg(d *caddyfile.Dispenser, v *bool) error {
	if err := noArgs(d); err != nil {
		return err
	}
	*v = true
	return nil
}

// stringArg reads the one argument of a subdirective.
func stringArg(d *caddyfile.Dispenser, v *string) error {
	if !d.AllArgs(v) {
		return d.ArgErr()
	}
	return nil
}

// appendArg reads the one argument of a repeatable subdirective onto a list.
func appendArg(d *caddyfile.Dispenser, list *[]string) error {
	var v string
	if err := expandableArg(d, &v, d.Val(), nil); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// checkedArg reads one argument and checks it with the check Provision makes.
func checkedArg(d *caddyfile.Dispenser, v *string, check func(string) error) error {
	if err := stringArg(d, v); err != nil {
		return err
	}
	if err := check(*v); err != nil {
		return d.WrapErr(err)
	}
	return nil
}

// expandableArg reads one argument that may hold placeholders: one without is checked
// now with check (if any), one with once Provision has expanded it. An error names the
// option, and so does the warning about a value that expands to nothing here.
func expandableArg(d *caddyfile.Dispenser, v *string, option string, check func(string) error) error {
	if err := stringArg(d, v); err != nil {
		return err
	}
	warnIfEmpty(d, option, *v)
	if check == nil || strings.Contains(*v, "{") {
		return nil
	}
	if err := check(*v); err != nil {
		return d.Errf("%s: %v", option, err)
	}
	return nil
}

// warnIfEmpty warns, with its line, of a value that expands to nothing here, such as
// an unset {env.X}: Provision refuses it, and cannot say where it was written. It is
// only a warning, as the config may be adapted here and run where the variable is set.
func warnIfEmpty(d *caddyfile.Dispenser, option, raw string) {
	repl := caddy.NewReplacer()
	if _, err := expandConfigured(option, raw, func(s string) string { return repl.ReplaceKnown(s, "") }); err != nil {
		warnAt(d, err.Error())
	}
}

// urlArg reads a URL; one with placeholders is checked once they are expanded.
func urlArg(d *caddyfile.Dispenser, v *string) error {
	return expandableArg(d, v, d.Val(), checkURL)
}

// countArg reads a whole number of at least 1.
func countArg(d *caddyfile.Dispenser, v *int) error {
	name := d.Val()
	var n string
	if err := stringArg(d, &n); err != nil {
		return err
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		return d.Errf("%s: must be a whole number of at least 1, not %q", name, n)
	}
	*v = count
	return nil
}

// durationArg reads a duration, checked as Provision checks it.
func durationArg(d *caddyfile.Dispenser, v *caddy.Duration) error {
	name := d.Val()
	var s string
	if err := stringArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: invalid duration %q: %v", name, s, err)
	}
	if _, err := durationOrDefault(name, caddy.Duration(dur), 0); err != nil {
		return d.WrapErr(err)
	}
	*v = caddy.Duration(dur)
	return nil
}

// cacheSizeArg reads a size in bytes with humanize's units: `64MB` is 64,000,000
// bytes (as the default), `64MiB` 64 × 2^20, a plain number is bytes.
func cacheSizeArg(d *caddyfile.Dispenser, v *int64) error {
	var size string
	if err := stringArg(d, &size); err != nil {
		return err
	}
	bytes, err := humanize.ParseBytes(size)
	if err != nil || bytes == 0 || bytes > 1<<50 {
		return d.Errf("cache_size: invalid size %q, e.g. 64MB", size)
	}
	*v = int64(bytes)
	return nil
}

// headerArgs reads `<name> <value>` of a repeatable header subdirective. The name is
// checked as Provision checks it; the value, which may hold placeholders, must not be
// empty here, nor once expanded.
func headerArgs(d *caddyfile.Dispenser, headers *map[string]string) error {
	option := d.Val()
	var name, value string
	if !d.AllArgs(&name, &value) {
		return d.ArgErr()
	}
	if err := checkHeaderName(name); err != nil {
		return d.Errf("%s: %v", option, err)
	}
	switch _, dup := (*headers)[name]; {
	case value == "":
		return d.Errf("%s %s: the value is empty", option, name)
	case dup:
		return d.Errf("%s %s: given twice", option, name)
	}
	warnIfEmpty(d, option+": "+name, value)
	if *headers == nil {
		*headers = map[string]string{}
	}
	(*headers)[name] = value
	return nil
}

// sourcesArgs reads one placeholder or several.
func sourcesArgs(d *caddyfile.Dispenser, srcs *Sources) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*srcs = args
	return nil
}

// unmarshalField reads `field <name> <placeholder>...`.
func (h *Handler) unmarshalField(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	if err := checkFieldName(name); err != nil {
		return d.WrapErr(err)
	}
	if _, dup := h.Fields[name]; dup {
		return d.Errf("field %s: given twice", name)
	}
	var srcs Sources
	if err := sourcesArgs(d, &srcs); err != nil {
		return err
	}
	if h.Fields == nil {
		h.Fields = map[string]Sources{}
	}
	h.Fields[name] = srcs
	return nil
}

// unmarshalWhitelist reads whitelist entries; those without placeholders are checked
// now, the others once Provision has expanded them.
func (b *Bot) unmarshalWhitelist(d *caddyfile.Dispenser) error {
	entries := d.RemainingArgs()
	if len(entries) == 0 {
		return d.ArgErr()
	}
	if _, err := compileWhitelist(withoutPlaceholders(entries)); err != nil {
		return d.Errf("whitelist: %v", err)
	}
	b.Whitelist = append(b.Whitelist, entries...)
	return nil
}

func withoutPlaceholders(entries []string) []string {
	var out []string
	for _, e := range entries {
		if !strings.Contains(e, "{") {
			out = append(out, e)
		}
	}
	return out
}

// checkHMACKey checks a sign_key as the assertion signer will.
func checkHMACKey(key string) error {
	_, err := contact.NewHMACSigner([]byte(key))
	return err
}

func checkOnFail(v string) error {
	_, err := parseOnFail(v)
	return err
}

func checkIdentifyBy(v string) error {
	_, err := primaryFieldOf(v)
	return err
}
