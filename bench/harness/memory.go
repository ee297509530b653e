package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
)

// defaultCacheSize is custom_auth's default cache_size, in bytes: the memory scenario's
// overhead ratio divides by it.
const defaultCacheSize = 64_000_000

// memoryResult is the memory scenario: a bare reverse_proxy and custom_auth under the
// same stream of distinct visitors, and the hit ratio of the verdict store on a skewed
// request sequence.
type memoryResult struct {
	runs []memoryRun // the bare proxy first, then custom_auth without GOMEMLIMIT, then with it
	zipf zipfResult
}

// memoryRun is one run of the memory scenario: distinct visitors sent as fast as Caddy
// takes them, filling custom_auth's cache (default cache_size) on site C.
type memoryRun struct {
	site  site
	limit string // GOMEMLIMIT of Caddy; empty for none
	// IdleHeap and LoadedHeap are Caddy's live heap in bytes (HeapAlloc right after a
	// forced collection): before the load, and after it with the cache full.
	idleHeap, loadedHeap int64
	gc                   gcSummary // gctrace over the load
	run                  loadRun
	moduleLog            []string // what custom_auth logged
}

// runMemory runs the bare proxy (site A) and custom_auth (site C) without GOMEMLIMIT,
// then custom_auth with it when set, and the hit-ratio comparison.
func runMemory(ctx context.Context, cfg *config) (*memoryResult, error) {
	sites := benchSites(cfg.ports)
	plan := []memoryRun{{site: sites["A"]}, {site: sites["C"]}}
	if cfg.memoryLimit != "" {
		plan = append(plan, memoryRun{site: sites["C"], limit: cfg.memoryLimit})
	}
	res := &memoryResult{}
	for _, m := range plan {
		if err := measureMemory(ctx, cfg, &m); err != nil {
			return nil, err
		}
		res.runs = append(res.runs, m)
		progress("memory: site %s, GOMEMLIMIT %s: %d visitors, %.0f req/s, live heap %d MB (max %d), GC %d%%, VmHWM %.0f MiB",
			m.site.name, orNone(m.limit), m.run.Wrk.Sent, m.run.throughput(), m.gc.LastLiveMB, m.gc.MaxLiveMB, m.gc.CPUPercent, m.run.peakRSSMiB())
	}
	var err error
	if res.zipf, err = runZipf(ctx, cfg); err != nil {
		return nil, err
	}
	progress("memory: zipf hit ratio: store %.4f, replaced store %.4f", res.zipf.store, res.zipf.replaced)
	return res, nil
}

func measureMemory(ctx context.Context, cfg *config, m *memoryRun) error {
	env := []string{"GODEBUG=gctrace=1", "GOGC=100", "GOMEMLIMIT=" + orOff(m.limit)}
	st := m.site
	s, err := startStack(ctx, cfg, "memory-"+st.name+"-"+orOff(m.limit), stackOptions{admin: true, caddyEnv: env}, st)
	if err != nil {
		return err
	}
	defer s.stop()
	if err := s.checkSites(ctx); err != nil {
		return err
	}
	if m.idleHeap, err = s.liveHeap(ctx); err != nil {
		return err
	}
	// gctrace goes to Caddy's stderr, its log file: the run's collections are what the
	// file gained during the run.
	start, err := fileSize(s.caddy.logPath)
	if err != nil {
		return err
	}
	if m.run, err = s.measure(ctx, st, cfg.memoryDuration, cfg.conns, tokens{}); err != nil {
		return err
	}
	trace, err := readFrom(s.caddy.logPath, start)
	if err != nil {
		return err
	}
	if m.gc, err = parseGCTrace(trace); err != nil {
		return err
	}
	if m.loadedHeap, err = s.liveHeap(ctx); err != nil {
		return err
	}
	m.moduleLog = s.moduleLog()
	return checkLoadRun(st, m.run, cfg.conns)
}

// liveHeap asks Caddy's admin API for a heap profile after a forced collection and
// returns its HeapAlloc: the live heap.
func (s *stack) liveHeap(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.adminURL("/debug/pprof/heap?gc=1&debug=1"), nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading Caddy's heap profile: %w", err)
	}
	defer resp.Body.Close()
	profile, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, fmt.Errorf("reading Caddy's heap profile: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("reading Caddy's heap profile: status %d: %.200s", resp.StatusCode, profile)
	}
	return parseHeapAlloc(profile)
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// readFrom returns a file's content from offset on.
func readFrom(path string, offset int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

func orOff(limit string) string {
	if limit == "" {
		return "off"
	}
	return limit
}

func orNone(limit string) string {
	if limit == "" {
		return "none"
	}
	return limit
}

// gcShare is the run's GC CPU as a percentage of Caddy's CPU during the run.
func (m memoryRun) gcShare() float64 {
	caddyMillis := float64(m.run.CaddyTicks) * 1000 / clockTicksPerSecond
	if caddyMillis <= 0 {
		return 0
	}
	return 100 * m.gc.CPUMillis / caddyMillis
}

// zipfResult is the verdict store's hit ratio next to the replaced store's, and the
// test's own line that says on what sequence.
type zipfResult struct {
	store, replaced float64
	line            string
}

// The line TestZipfHitRatio logs.
var zipfLine = regexp.MustCompile(`zipf hit ratio: store=([0-9.]+) replaced=([0-9.]+)(.*)`)

// runZipf runs custom_auth's TestZipfHitRatio from its compiled tests, which plays
// the same Zipf request sequence through the verdict store and the store it replaced.
func runZipf(ctx context.Context, cfg *config) (zipfResult, error) {
	out, err := exec.CommandContext(ctx, cfg.unitTestsBin, "-test.run", "^TestZipfHitRatio$", "-test.v", "-test.count=1").CombinedOutput()
	if err != nil {
		return zipfResult{}, fmt.Errorf("TestZipfHitRatio: %w: %.2000s", err, out)
	}
	return parseZipf(out)
}

func parseZipf(out []byte) (zipfResult, error) {
	m := zipfLine.FindSubmatch(out)
	if m == nil {
		return zipfResult{}, fmt.Errorf("TestZipfHitRatio logged no hit ratios: %.2000s", out)
	}
	store, err1 := strconv.ParseFloat(string(m[1]), 64)
	replaced, err2 := strconv.ParseFloat(string(m[2]), 64)
	if err1 != nil || err2 != nil {
		return zipfResult{}, fmt.Errorf("TestZipfHitRatio: %q", m[0])
	}
	return zipfResult{store: store, replaced: replaced, line: string(m[3])}, nil
}
