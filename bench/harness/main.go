// Command harness runs the custom_auth benchmark: it starts the bench servers and Caddy
// for each scenario, checks that every site really does what it claims, runs wrk, reads
// what each process cost from /proc, and writes the report. bench/run.sh builds it,
// Caddy and the servers, and calls it; see bench/README.md.
//
// It drives the whole run, rather than only computing the report from figures a shell
// script collected, because the checks that make the figures trustworthy (what the
// backend received, how many identity API calls a request cost, whether custom_auth
// fell back) are program logic, and CPU and counters must be read right around each wrk
// run. All of it is plain Go, so the parsing and the arithmetic have unit tests.
//
// Settings come from the environment (see settings); the paths from flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is a run's settings.
type config struct {
	scenarios      []string // in the order of allScenarios
	duration       time.Duration
	rounds         int
	conns, threads int
	warmup         time.Duration
	ports          ports
	apiLatency     time.Duration
	latencyConns   []int
	memoryDuration time.Duration
	memoryLimit    string // GOMEMLIMIT of the memory scenario's extra run of C; empty for none
	fleetVisitors  int

	caddyBin, serversBin, workDir, out string
	unitTestsBin                       string // custom_auth's compiled tests (TestZipfHitRatio, the handler's benchmarks)
	command                            string // the command as typed, for the report
	cores                              int
}

var allScenarios = []string{"sites", "latency", "memory", "fleet", "nginx", "handler"}

// setting is one environment variable of bench/run.sh.
type setting struct {
	name, fallback string
	apply          func(c *config, v string) error
}

var settings = []setting{
	{"SCENARIO", "all", parseScenarios},
	{"DURATION", "10s", func(c *config, v string) (err error) { c.duration, err = wrkDuration(v); return }},
	{"ROUNDS", "3", func(c *config, v string) (err error) { c.rounds, err = intIn(v, 1, 100); return }},
	{"CONNS", "64", func(c *config, v string) (err error) { c.conns, err = intIn(v, 1, 10000); return }},
	{"THREADS", "2", func(c *config, v string) (err error) { c.threads, err = intIn(v, 1, 64); return }},
	{"WARMUP", "3s", func(c *config, v string) (err error) { c.warmup, err = wrkDuration(v); return }},
	{"BASE_PORT", "18400", func(c *config, v string) error {
		base, err := intIn(v, 1024, 65000)
		c.ports = ports{base: base}
		return err
	}},
	{"API_LATENCY", "50ms", func(c *config, v string) (err error) {
		c.apiLatency, err = time.ParseDuration(v)
		if err == nil && (c.apiLatency < 0 || c.apiLatency > 10*time.Second) {
			err = errors.New("want 0 to 10s")
		}
		return
	}},
	{"LATENCY_CONNS", "64 256", func(c *config, v string) error {
		c.latencyConns = nil
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' }) {
			n, err := intIn(f, 1, 10000)
			if err != nil {
				return err
			}
			c.latencyConns = append(c.latencyConns, n)
		}
		if len(c.latencyConns) == 0 {
			return errors.New("want at least one connection count")
		}
		return nil
	}},
	{"FLEET_VISITORS", "100", func(c *config, v string) (err error) { c.fleetVisitors, err = intIn(v, 1, 100000); return }},
	{"MEMORY_DURATION", "60s", func(c *config, v string) (err error) { c.memoryDuration, err = wrkDuration(v); return }},
	{"MEMORY_GOMEMLIMIT", "off", func(c *config, v string) error {
		if v == "" || v == "off" {
			c.memoryLimit = ""
			return nil
		}
		if !memoryLimitForm.MatchString(v) {
			return errors.New("want a size such as 128MiB, or off")
		}
		c.memoryLimit = v
		return nil
	}},
}

// memoryLimitForm is what GOMEMLIMIT accepts: bytes, optionally with a unit.
var memoryLimitForm = regexp.MustCompile(`^[1-9][0-9]*(B|KiB|MiB|GiB|TiB)?$`)

// loadConfig reads the settings from the environment.
func loadConfig(getenv func(string) (string, bool)) (*config, error) {
	c := &config{cores: runtime.NumCPU()}
	var typed []string
	for _, s := range settings {
		v, set := getenv(s.name)
		if set {
			typed = append(typed, s.name+"="+v)
		} else {
			v = s.fallback
		}
		if err := s.apply(c, v); err != nil {
			return nil, fmt.Errorf("%s=%q: %w", s.name, v, err)
		}
	}
	if c.threads > c.conns || slices.Min(c.latencyConns) < c.threads {
		return nil, errors.New("THREADS must not exceed CONNS nor any of LATENCY_CONNS")
	}
	c.command = strings.Join(append(typed, "bench/run.sh"), " ")
	return c, nil
}

func parseScenarios(c *config, v string) error {
	want := map[string]bool{}
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' }) {
		if f == "all" {
			for _, s := range allScenarios {
				want[s] = true
			}
			continue
		}
		found := false
		for _, s := range allScenarios {
			found = found || s == f
		}
		if !found {
			return fmt.Errorf("unknown scenario %q (want all, %s)", f, strings.Join(allScenarios, ", "))
		}
		want[f] = true
	}
	c.scenarios = nil
	for _, s := range allScenarios {
		if want[s] {
			c.scenarios = append(c.scenarios, s)
		}
	}
	if len(c.scenarios) == 0 {
		return errors.New("no scenario")
	}
	return nil
}

// wrkDuration reads a duration wrk can take: whole seconds, at least one.
func wrkDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d < time.Second || d%time.Second != 0 {
		return 0, errors.New("want whole seconds, at least 1s")
	}
	return d, nil
}

func intIn(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("want an integer from %d to %d", lo, hi)
	}
	return n, nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func main() {
	caddyBin := flag.String("caddy", "", "Caddy built with custom_auth")
	serversBin := flag.String("servers", "", "the bench servers")
	workDir := flag.String("work", "", "directory for Caddyfiles and logs")
	unitTests := flag.String("unit-tests", "", "custom_auth's compiled tests (go test -c)")
	out := flag.String("out", "bench/RESULTS.md", "report file")
	flag.Parse()
	if *caddyBin == "" || *serversBin == "" || *workDir == "" || *unitTests == "" {
		fmt.Fprintln(os.Stderr, "usage: harness -caddy BIN -servers BIN -unit-tests BIN -work DIR [-out FILE]; bench/run.sh calls it")
		os.Exit(2)
	}
	cfg, err := loadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	cfg.caddyBin, cfg.serversBin, cfg.workDir, cfg.out = *caddyBin, *serversBin, *workDir, *out
	cfg.unitTestsBin = *unitTests

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		os.Exit(1)
	}
}

// run runs the chosen scenarios and writes the report.
func run(ctx context.Context, cfg *config) error {
	if err := os.WriteFile(cfg.workPath("widget.lua"), widgetScript, 0o600); err != nil {
		return err
	}
	if slices.Contains(cfg.scenarios, "fleet") {
		if err := fleetPreflight(cfg); err != nil {
			return err
		}
	}
	r := &report{cfg: cfg, env: describeEnvironment(ctx, cfg)}
	var err error
	for _, scenario := range cfg.scenarios {
		switch scenario {
		case "sites":
			r.sites, err = runSites(ctx, cfg)
		case "latency":
			r.latency, err = runLatency(ctx, cfg)
		case "memory":
			r.memory, err = runMemory(ctx, cfg)
		case "fleet":
			r.fleet, err = runFleet(ctx, cfg)
		case "nginx":
			r.nginx, err = runNginx(ctx, cfg)
		case "handler":
			r.handler, err = runHandler(ctx, cfg)
		}
		if err != nil {
			return fmt.Errorf("%s scenario: %w", scenario, err)
		}
	}
	text := r.markdown()
	if err := os.WriteFile(cfg.out, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Print(r.summary())
	progress("wrote %s", cfg.out)
	return nil
}
