package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/custom-auth/custom_auth/bench/fixture"
)

// fleetResult is the fleet scenario: two gateways (two Caddy processes, each with its
// own local cache), every visitor's first request on one and the next on the other,
// as a load balancer would spread them; once on their own, once sharing verdicts
// through a redis-server (shared_cache).
type fleetResult struct {
	visitors     int
	redisVersion string
	runs         []fleetRun // alone, then shared
}

// fleetRun is one configuration of the fleet.
type fleetRun struct {
	shared bool
	// apiCalls counts the identity API calls for all visitors.
	apiCalls int64
	// Per visitor: the first request, on gateway A (a local miss); the next, on
	// gateway B; a third, on A again (a local hit).
	first, other, repeat []time.Duration
	moduleLog            []string // what custom_auth logged, both gateways
}

// sharedTimeout is shared_cache's timeout in the fleet scenario (its default).
const sharedTimeout = 50 * time.Millisecond

func (p ports) redis() int { return p.base + 4 }

// fleetPreflight fails at once when the fleet scenario cannot run.
func fleetPreflight(cfg *config) error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return errors.New("the fleet scenario needs redis-server: apt-get install redis-server (as root, or with sudo)")
	}
	return checkPortsFree(cfg.ports.redis())
}

// runFleet measures the two gateways alone, then sharing a fresh redis-server.
func runFleet(ctx context.Context, cfg *config) (*fleetResult, error) {
	res := &fleetResult{visitors: cfg.fleetVisitors}
	alone, err := measureFleet(ctx, cfg, "", 1)
	if err != nil {
		return nil, err
	}
	res.runs = append(res.runs, alone)

	redis, err := startRedis(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer redis.stop()
	res.redisVersion = firstFields(commandOutput(ctx, "redis-server", "--version"), 3)
	// Other visitors than the first run's: nothing of theirs is cached anywhere.
	shared, err := measureFleet(ctx, cfg, fmt.Sprintf("redis://127.0.0.1:%d", cfg.ports.redis()), 1+cfg.fleetVisitors)
	if err != nil {
		return nil, err
	}
	res.runs = append(res.runs, shared)
	return res, nil
}

// fleetSites are the two gateways' custom_auth sites, with shared_cache when
// sharedURL is set.
func fleetSites(p ports, sharedURL string) (a, b site) {
	body := fmt.Sprintf("custom_auth {\n\tbot bench {\n\t\tauth_url http://127.0.0.1:%d/ca\n\t\twhitelist shop.example.com\n\t}\n", p.api())
	what := "custom_auth, alone"
	if sharedURL != "" {
		body += fmt.Sprintf("\tshared_cache %s {\n\t\ttimeout %s\n\t}\n", sharedURL, sharedTimeout)
		what = "custom_auth, shared_cache"
	}
	body += fmt.Sprintf("}\nreverse_proxy 127.0.0.1:%d", p.backend())
	a = site{name: "A", what: what, port: p.site(0), kind: customAuth, cached: true, body: body}
	b = site{name: "B", what: what, port: p.site(1), kind: customAuth, cached: true, body: body}
	return a, b
}

// measureFleet starts the servers and gateway A (a stack), then gateway B, and sends
// each visitor to A, B and A again, one request at a time.
func measureFleet(ctx context.Context, cfg *config, sharedURL string, firstVisitor int) (fleetRun, error) {
	run := fleetRun{shared: sharedURL != ""}
	name := "fleet-alone"
	if run.shared {
		name = "fleet-shared"
	}
	a, b := fleetSites(cfg.ports, sharedURL)
	s, err := startStack(ctx, cfg, name+"-A", stackOptions{apiLatency: cfg.apiLatency}, a)
	if err != nil {
		return run, err
	}
	defer s.stop()
	caddyfilePath := cfg.workPath(name + "-B.Caddyfile")
	if err := os.WriteFile(caddyfilePath, []byte(caddyfile(0, b)), 0o600); err != nil {
		return run, err
	}
	home := cfg.workPath("home")
	gatewayB, err := startProcess("Caddy (gateway B)", cfg.workPath(name+"-B.caddy.log"),
		[]string{"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/config", "XDG_DATA_HOME=" + home + "/data"},
		cfg.caddyBin, "run", "--config", caddyfilePath, "--adapter", "caddyfile")
	if err != nil {
		return run, err
	}
	defer gatewayB.stop()
	if err := waitHTTP(ctx, gatewayB, s.url(b)); err != nil {
		return run, err
	}

	before, err := s.upstreamStats(ctx)
	if err != nil {
		return run, err
	}
	for i := range cfg.fleetVisitors {
		id := strconv.Itoa(1_000_000 + firstVisitor + i)
		for _, step := range []struct {
			st   site
			took *[]time.Duration
		}{{a, &run.first}, {b, &run.other}, {a, &run.repeat}} {
			start := time.Now()
			ans, err := s.probe(ctx, step.st, fixture.Token(id), nil)
			took := time.Since(start)
			if err != nil {
				return run, err
			}
			if got := contactHeaders(ans.backend).Get("X-Contact-Id"); got != id {
				return run, fmt.Errorf("gateway %s, visitor %s: the backend got contact %q (status %d)\n%s", step.st.name, id, got, ans.status, s.logTails())
			}
			*step.took = append(*step.took, took)
		}
	}
	after, err := s.upstreamStats(ctx)
	if err != nil {
		return run, err
	}
	run.apiCalls = after.Sub(before).CA
	run.moduleLog = append(s.moduleLog(), moduleLogOf(gatewayB)...)
	progress("fleet (%s): %d visitors, %.2f API calls per visitor; first request p50 %.2f ms, on the other gateway p50 %.2f ms",
		run.label(), cfg.fleetVisitors, run.callsPerVisitor(), ms(percentile(run.first, 50)), ms(percentile(run.other, 50)))
	return run, nil
}

func (r fleetRun) label() string {
	if r.shared {
		return "shared_cache"
	}
	return "alone"
}

func (r fleetRun) callsPerVisitor() float64 {
	return float64(r.apiCalls) / float64(len(r.first))
}

// moduleLogOf summarises what custom_auth logged in a Caddy process's log.
func moduleLogOf(p *process) []string {
	return (&stack{caddy: p}).moduleLog()
}

// startRedis runs a redis-server without persistence on its loopback port and waits
// until it answers PING.
func startRedis(ctx context.Context, cfg *config) (*process, error) {
	p, err := startProcess("redis-server", cfg.workPath("redis.log"), nil, "redis-server",
		"--port", strconv.Itoa(cfg.ports.redis()), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", cfg.ports.redis())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := pingRedis(addr); err == nil {
			return p, nil
		} else if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("redis-server does not answer PING at %s after 10 s: %v\n%s", addr, err, p.logTail(10))
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("redis-server exited\n%s", p.logTail(10))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func pingRedis(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// percentile is the p-th percentile of the durations (nearest rank).
func percentile(durations []time.Duration, p float64) time.Duration {
	if len(durations) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(durations))
	rank := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// writeFleet writes the fleet scenario's section of the report.
func (r *report) writeFleet(b *bytes.Buffer) {
	res, c := r.fleet, r.cfg
	fmt.Fprintf(b, "\n## Fleet: two gateways, alone and sharing verdicts through Redis\n\n")
	fmt.Fprintf(b, "%d distinct visitors, one request at a time: each visitor's first request on gateway A, the next on gateway B (two Caddy processes, as a load balancer would spread them), a third on A again. The identity API answers after %s; shared_cache `timeout %s`; %s on 127.0.0.1.\n\n",
		res.visitors, c.apiLatency, sharedTimeout, res.redisVersion)
	t := newTable("gateways", "API calls per visitor>", "first request, A: p50 ms>", "p90 ms>", "next request, B: p50 ms>", "p90 ms>", "third, A again: p50 ms>")
	for _, run := range res.runs {
		t.add(run.label(), f2(run.callsPerVisitor()),
			f2(ms(percentile(run.first, 50))), f2(ms(percentile(run.first, 90))),
			f2(ms(percentile(run.other, 50))), f2(ms(percentile(run.other, 90))),
			f2(ms(percentile(run.repeat, 50))))
	}
	b.WriteString(t.String())
	if len(res.runs) == 2 {
		alone, shared := res.runs[0], res.runs[1]
		fmt.Fprintf(b, "\n- A visitor costs the identity API %.2f calls on two gateways alone, %.2f with shared_cache.\n",
			alone.callsPerVisitor(), shared.callsPerVisitor())
		fmt.Fprintf(b, "- A shared-cache miss (a Redis GET before the API call, a SET after it) adds %.2f ms at p50 and %.2f ms at p90 to a local miss.\n",
			ms(percentile(shared.first, 50)-percentile(alone.first, 50)), ms(percentile(shared.first, 90)-percentile(alone.first, 90)))
		fmt.Fprintf(b, "- A visitor's request on the other gateway takes %.2f ms at p50 from the shared cache, instead of %.2f ms through the identity API.\n",
			ms(percentile(shared.other, 50)), ms(percentile(alone.other, 50)))
	}
	for _, run := range res.runs {
		for _, line := range run.moduleLog {
			fmt.Fprintf(b, "- Warning: fleet (%s), Caddy's log, custom_auth: %s\n", run.label(), line)
		}
	}
}
