package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// sitesResult is the sites scenario: every site under the same load, in interleaved
// rounds, with a fixed token (custom_auth's cache warm).
type sitesResult struct {
	sites     []site
	runs      []siteRun
	fellBack  []string // sites that fell back before a run, and for how long
	moduleLog []string // what custom_auth logged
	// tokenPassedOn are the custom_auth sites that handed the access token on.
	tokenPassedOn []string
	peakRSSReset  bool // VmHWM could be reset before each run
}

// runSites checks every site, warms them up, then measures them round by round.
func runSites(ctx context.Context, cfg *config) (*sitesResult, error) {
	all := benchSites(cfg.ports)
	res := &sitesResult{peakRSSReset: true}
	for _, name := range siteOrder {
		res.sites = append(res.sites, all[string(name)])
	}
	s, err := startStack(ctx, cfg, "sites", stackOptions{}, res.sites...)
	if err != nil {
		return nil, err
	}
	defer s.stop()

	progress("sites: checking every site")
	if err := s.checkSites(ctx); err != nil {
		return nil, err
	}
	progress("sites: warming up, %s per site", cfg.warmup)
	for _, st := range res.sites {
		if _, err := s.measure(ctx, st, cfg.warmup, cfg.conns, tokens{fixed: verifiedToken}); err != nil {
			return nil, err
		}
	}
	if err := s.checkSites(ctx); err != nil {
		return nil, fmt.Errorf("after the warm-up: %w", err)
	}

	for round := 1; round <= cfg.rounds; round++ {
		for _, st := range res.sites {
			// Each run of a custom_auth site starts verified.
			fell, err := s.waitVerified(ctx, st)
			if err != nil {
				return nil, err
			}
			if fell > 0 {
				res.fellBack = append(res.fellBack, fmt.Sprintf("site %s fell back for %.1f s before round %d", st.name, fell.Seconds(), round))
			}
			run, err := s.measure(ctx, st, cfg.duration, cfg.conns, tokens{fixed: verifiedToken})
			if err != nil {
				return nil, err
			}
			if err := checkLoadRun(st, run, cfg.conns); err != nil {
				return nil, fmt.Errorf("round %d: %w", round, err)
			}
			res.peakRSSReset = res.peakRSSReset && run.PeakRSSReset
			res.runs = append(res.runs, siteRun{round: round, site: st, run: run})
			progress("sites: round %d site %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, Caddy %.1f µs/req, errors %d, other load %.0f%%",
				round, st.name, run.throughput(), ms(run.Wrk.P50), ms(run.Wrk.P99), run.caddyCPU(), run.errors(), run.otherLoad(cfg.cores))
		}
	}
	// The sites must still be right after the load.
	if err := s.checkSites(ctx); err != nil {
		return nil, fmt.Errorf("after the last round: %w", err)
	}
	res.moduleLog = s.moduleLog()
	res.tokenPassedOn = slices.Sorted(maps.Keys(s.tokenPassedOn))
	return res, nil
}

// checkLoadRun checks that the requests of a run reached the backend with the identity.
// Only those in flight when wrk stops (at most one per connection) may miss it: wrk
// closes their connections and custom_auth falls back for them.
func checkLoadRun(st site, run loadRun, conns int) error {
	if st.kind == respondOK {
		return nil
	}
	if run.Upstream.Backend <= 0 {
		return fmt.Errorf("site %s: the backend got no requests", st.name)
	}
	if missed := run.unverified(st); missed > int64(conns) {
		verified, _ := run.verified(st)
		return fmt.Errorf("site %s: only %d of %d backend requests carried the identity", st.name, verified, run.Upstream.Backend)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
