package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
)

// memoryRun is one run of the memory scenario: distinct visitors filling custom_auth's
// cache (default cache_size) as fast as Caddy takes them.
type memoryRun struct {
	limit string // GOMEMLIMIT of Caddy; empty for none
	// IdleHeap and LoadedHeap are Caddy's live heap in bytes (HeapAlloc right after a
	// forced collection): before the load, and after it with the cache full.
	idleHeap, loadedHeap int64
	gc                   gcSummary // gctrace over the load
	run                  loadRun
	moduleLog            []string // what custom_auth logged
}

// runMemory runs the memory scenario without GOMEMLIMIT, then with it when set.
func runMemory(ctx context.Context, cfg *config) ([]memoryRun, error) {
	limits := []string{""}
	if cfg.memoryLimit != "" {
		limits = append(limits, cfg.memoryLimit)
	}
	var runs []memoryRun
	for _, limit := range limits {
		m, err := measureMemory(ctx, cfg, limit)
		if err != nil {
			return nil, err
		}
		runs = append(runs, m)
		progress("memory: GOMEMLIMIT %s: %d visitors, %.0f req/s, live heap %d MB (max %d), GC %d%%, VmHWM %.0f MiB",
			orNone(limit), m.run.Wrk.Sent, m.run.throughput(), m.gc.LastLiveMB, m.gc.MaxLiveMB, m.gc.CPUPercent, m.run.peakRSSMiB())
	}
	return runs, nil
}

func measureMemory(ctx context.Context, cfg *config, limit string) (memoryRun, error) {
	m := memoryRun{limit: limit}
	env := []string{"GODEBUG=gctrace=1", "GOGC=100", "GOMEMLIMIT=" + orOff(limit)}
	st := benchSites(cfg.ports)["C"]
	s, err := startStack(ctx, cfg, "memory-"+orOff(limit), stackOptions{admin: true, caddyEnv: env}, st)
	if err != nil {
		return m, err
	}
	defer s.stop()
	if err := s.checkSites(ctx); err != nil {
		return m, err
	}
	if m.idleHeap, err = s.liveHeap(ctx); err != nil {
		return m, err
	}
	// gctrace goes to Caddy's stderr, its log file: the run's collections are what the
	// file gained during the run.
	start, err := fileSize(s.caddy.logPath)
	if err != nil {
		return m, err
	}
	if m.run, err = s.measure(ctx, st, cfg.memoryDuration, cfg.conns, tokens{}); err != nil {
		return m, err
	}
	trace, err := readFrom(s.caddy.logPath, start)
	if err != nil {
		return m, err
	}
	if m.gc, err = parseGCTrace(trace); err != nil {
		return m, err
	}
	if m.loadedHeap, err = s.liveHeap(ctx); err != nil {
		return m, err
	}
	m.moduleLog = s.moduleLog()
	return m, checkLoadRun(st, m.run, cfg.conns)
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
