package main

import (
	"context"
	"fmt"
)

// latencyRun is one run of the latency scenario: a new visitor on every request, an
// identity API that takes its time to answer.
type latencyRun struct {
	site      site
	conns     int
	run       loadRun
	moduleLog []string // what custom_auth logged
}

// latencySites are the sites of the latency scenario: custom_auth, and forward_auth
// for reference.
const latencySites = "CB"

// runLatency measures, at each concurrency, each latency site with a fresh Caddy and
// fresh servers, so that the identity API's connection count starts from nothing.
func runLatency(ctx context.Context, cfg *config) ([]latencyRun, error) {
	all := benchSites(cfg.ports)
	var runs []latencyRun
	for _, conns := range cfg.latencyConns {
		for _, name := range latencySites {
			st := all[string(name)]
			if st.kind == customAuth {
				st.what = "custom_auth, a new visitor per request"
			}
			lr, err := measureLatency(ctx, cfg, st, conns)
			if err != nil {
				return nil, err
			}
			runs = append(runs, lr)
			run := lr.run
			progress("latency: site %s, %d connections: %.0f req/s, p50 %.1f ms, p99 %.1f ms, %d API connections, errors %d",
				st.name, conns, run.throughput(), ms(run.Wrk.P50), ms(run.Wrk.P99), run.Upstream.APIConns, run.errors())
		}
	}
	return runs, nil
}

func measureLatency(ctx context.Context, cfg *config, st site, conns int) (latencyRun, error) {
	lr := latencyRun{site: st, conns: conns}
	s, err := startStack(ctx, cfg, fmt.Sprintf("latency-%s-%d", st.name, conns), stackOptions{apiLatency: cfg.apiLatency}, st)
	if err != nil {
		return lr, err
	}
	defer s.stop()
	if err := s.checkSites(ctx); err != nil {
		return lr, err
	}
	if lr.run, err = s.measure(ctx, st, cfg.duration, conns, tokens{}); err != nil {
		return lr, err
	}
	if err := checkLoadRun(st, lr.run, conns); err != nil {
		return lr, err
	}
	// Every request is a new visitor: nothing may come from a cache.
	if calls := lr.run.Upstream.CA + lr.run.Upstream.Check; calls < lr.run.Wrk.Requests {
		return lr, fmt.Errorf("site %s: %d identity API calls for %d new visitors", st.name, calls, lr.run.Wrk.Requests)
	}
	lr.moduleLog = s.moduleLog()
	return lr, nil
}
