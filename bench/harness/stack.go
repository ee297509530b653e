package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/custom-auth/custom_auth/bench/fixture"
)

// stack is what one scenario runs: the bench servers and a Caddy serving some sites.
type stack struct {
	cfg     *config
	servers *process
	caddy   *process
	sites   []site
	client  *http.Client
	// tokenPassedOn holds the custom_auth sites that handed the access token on to the
	// backend.
	tokenPassedOn map[string]bool
}

// stackOptions is what differs between the scenarios' stacks.
type stackOptions struct {
	apiLatency time.Duration // the identity API's answer delay
	admin      bool          // serve Caddy's admin API on the admin port
	caddyEnv   []string      // e.g. GODEBUG, GOMEMLIMIT
}

// startStack starts the servers and Caddy and waits until every site answers; name
// prefixes the files it writes to the work directory.
func startStack(ctx context.Context, cfg *config, name string, opts stackOptions, sites ...site) (*stack, error) {
	if err := checkPortsFree(cfg.ports.all(len(siteOrder))...); err != nil {
		return nil, err
	}
	s := &stack{
		cfg: cfg, sites: sites,
		client:        &http.Client{Timeout: 5 * time.Second},
		tokenPassedOn: map[string]bool{},
	}
	p := cfg.ports
	var err error
	s.servers, err = startProcess("bench servers", cfg.workPath(name+".servers.log"), nil, cfg.serversBin,
		"-backend", fmt.Sprintf("127.0.0.1:%d", p.backend()),
		"-api", fmt.Sprintf("127.0.0.1:%d", p.api()),
		"-stats", fmt.Sprintf("127.0.0.1:%d", p.stats()),
		"-latency", opts.apiLatency.String())
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, s.servers, s.statsURL()); err != nil {
		s.stop()
		return nil, err
	}

	adminPort := 0
	if opts.admin {
		adminPort = p.admin()
	}
	caddyfilePath := cfg.workPath(name + ".Caddyfile")
	if err := os.WriteFile(caddyfilePath, []byte(caddyfile(adminPort, sites...)), 0o600); err != nil {
		s.stop()
		return nil, err
	}
	home := cfg.workPath("home")
	env := append([]string{"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/config", "XDG_DATA_HOME=" + home + "/data"},
		opts.caddyEnv...)
	s.caddy, err = startProcess("Caddy", cfg.workPath(name+".caddy.log"), env, cfg.caddyBin,
		"run", "--config", caddyfilePath, "--adapter", "caddyfile")
	if err != nil {
		s.stop()
		return nil, err
	}
	for _, st := range sites {
		if err := waitHTTP(ctx, s.caddy, s.url(st)); err != nil {
			s.stop()
			return nil, err
		}
	}
	return s, nil
}

// stop ends Caddy, then the servers.
func (s *stack) stop() {
	for _, p := range []*process{s.caddy, s.servers} {
		if p != nil {
			p.stop()
		}
	}
}

func (s *stack) url(st site) string { return fmt.Sprintf("http://127.0.0.1:%d/", st.port) }

func (s *stack) statsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/stats", s.cfg.ports.stats())
}

func (s *stack) adminURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.cfg.ports.admin(), path)
}

// upstreamStats reads the servers' counters.
func (s *stack) upstreamStats(ctx context.Context) (fixture.Stats, error) {
	var st fixture.Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.statsURL(), nil)
	if err != nil {
		return st, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return st, fmt.Errorf("servers' stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("servers' stats: %w", err)
	}
	return st, nil
}

// loadRun is one wrk run and what the processes did meanwhile.
type loadRun struct {
	Wrk wrkResult
	// CPU used during the run, in clock ticks: Caddy, the bench servers, the harness
	// itself, and the whole machine (busy, all cores).
	CaddyTicks, ServersTicks, HarnessTicks, MachineTicks int64
	Upstream                                             fixture.Stats // counted during the run
	CaddyMemory                                          memoryStatus  // after the run
	PeakRSSReset                                         bool          // VmHWM was reset before the run
}

// cpuReading is the CPU counters measure reads before and after a run.
type cpuReading struct{ caddy, servers, harness, machine int64 }

func (s *stack) readCPU() (cpuReading, error) {
	var r cpuReading
	var errs [4]error
	r.caddy, errs[0] = processCPUTicks(s.caddy.pid())
	r.servers, errs[1] = processCPUTicks(s.servers.pid())
	r.harness, errs[2] = processCPUTicks(os.Getpid())
	r.machine, errs[3] = machineBusyTicks()
	return r, errors.Join(errs[:]...)
}

// measure runs wrk against a site and records what it cost.
func (s *stack) measure(ctx context.Context, st site, d time.Duration, conns int, tok tokens) (loadRun, error) {
	var run loadRun
	before, err := s.upstreamStats(ctx)
	if err != nil {
		return run, err
	}
	run.PeakRSSReset = resetPeakRSS(s.caddy.pid())
	cpu0, err := s.readCPU()
	if err != nil {
		return run, err
	}
	run.Wrk, err = runWrk(ctx, load{
		url: s.url(st), threads: s.cfg.threads, conns: conns, duration: d, tokens: tok,
		scriptPath: s.cfg.workPath("widget.lua"),
	})
	if err != nil {
		return run, fmt.Errorf("site %s: %w", st.name, err)
	}
	cpu1, err := s.readCPU()
	if err != nil {
		return run, err
	}
	run.CaddyTicks = cpu1.caddy - cpu0.caddy
	run.ServersTicks = cpu1.servers - cpu0.servers
	run.HarnessTicks = cpu1.harness - cpu0.harness
	run.MachineTicks = cpu1.machine - cpu0.machine
	if run.CaddyMemory, err = processMemory(s.caddy.pid()); err != nil {
		return run, err
	}
	after, err := s.upstreamStats(ctx)
	if err != nil {
		return run, err
	}
	run.Upstream = after.Sub(before)
	return run, nil
}

// moduleLog summarises what custom_auth logged in Caddy's log.
func (s *stack) moduleLog() []string {
	f, err := os.Open(s.caddy.logPath)
	if err != nil {
		return []string{"Caddy's log could not be read: " + err.Error()}
	}
	defer f.Close()
	return summariseModuleLog(f)
}

// summariseModuleLog lists each distinct message (and error) custom_auth logged, with
// how often; other loggers and lines that are not JSON (gctrace) are skipped.
func summariseModuleLog(log io.Reader) []string {
	counts := map[string]int{}
	sc := bufio.NewScanner(log)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var entry struct {
			Logger, Msg, Error string
		}
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &entry) != nil ||
			entry.Logger != "http.handlers.custom_auth" {
			continue
		}
		text := entry.Msg
		if entry.Error != "" {
			text += ": " + entry.Error
		}
		counts[text]++
	}
	var lines []string
	for _, text := range slices.Sorted(maps.Keys(counts)) {
		lines = append(lines, text+" ("+strconv.Itoa(counts[text])+"x)")
	}
	return lines
}

// workPath is a file in the run's work directory.
func (c *config) workPath(name string) string { return filepath.Join(c.workDir, name) }

// logTails is the end of Caddy's and the servers' logs, for a failure's message.
func (s *stack) logTails() string {
	return s.caddy.logTail(15) + "\n" + s.servers.logTail(5)
}
