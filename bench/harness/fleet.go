package main

import (
	"bufio"
	"bytes"
	"context"
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

// fleetResult is the fleet scenario: three gateways (three Caddy processes, each with
// its own local cache), every visitor's first request on one and the next ones on the
// others, as a load balancer would spread them; on their own, sharing verdicts through
// one redis-server, and through a Redis Cluster of three shards (shared_cache).
type fleetResult struct {
	visitors     int
	redisVersion string
	runs         []fleetRun // alone, one node, cluster
}

// fleetRun is one configuration of the fleet.
type fleetRun struct {
	shared string // "": alone; else what the shared cache is
	// apiCalls counts the identity API calls for all visitors.
	apiCalls int64
	// Per visitor: the first request, on gateway A (a local miss); the next ones, on
	// gateways B and C; a last one, on A again (a local hit).
	first, other, repeat []time.Duration
	moduleLog            []string // what custom_auth logged, every gateway
}

// What a fleet run shares its verdicts through.
const (
	sharedOneNode = "shared_cache, one node"
	sharedCluster = "shared_cache, 3-shard cluster"
)

// sharedTimeout is shared_cache's timeout in the fleet scenario (its default).
const sharedTimeout = 50 * time.Millisecond

func (p ports) redis() int { return p.base + 4 }

// clusterNode is the port of the i-th node of the Redis Cluster (0-2).
func (p ports) clusterNode(i int) int { return p.base + 5 + i }

// fleetPreflight fails at once when the fleet scenario cannot run.
func fleetPreflight(cfg *config) error {
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the fleet scenario needs %s: apt-get install redis-server redis-tools (as root, or with sudo)", tool)
		}
	}
	return checkPortsFree(cfg.ports.redis(), cfg.ports.clusterNode(0), cfg.ports.clusterNode(1), cfg.ports.clusterNode(2))
}

// runFleet measures the gateways alone, then sharing a fresh redis-server, then a
// fresh Redis Cluster of three shards.
func runFleet(ctx context.Context, cfg *config) (*fleetResult, error) {
	res := &fleetResult{visitors: cfg.fleetVisitors}
	alone, err := measureFleet(ctx, cfg, "", "", 1)
	if err != nil {
		return nil, err
	}
	res.runs = append(res.runs, alone)
	res.redisVersion = firstFields(commandOutput(ctx, "redis-server", "--version"), 3)
	for i, shared := range []string{sharedOneNode, sharedCluster} {
		url, stop, err := startSharedCache(ctx, cfg, shared)
		if err != nil {
			return nil, err
		}
		// Other visitors than the other runs': nothing of theirs is cached anywhere.
		run, err := measureFleet(ctx, cfg, shared, url, 1+(i+1)*cfg.fleetVisitors)
		stop()
		if err != nil {
			return nil, err
		}
		res.runs = append(res.runs, run)
	}
	return res, nil
}

// startSharedCache starts one redis-server or a cluster of three, and returns the
// shared_cache URL and how to stop them.
func startSharedCache(ctx context.Context, cfg *config, shared string) (string, func(), error) {
	if shared == sharedOneNode {
		redis, err := startRedis(ctx, cfg, "redis", cfg.ports.redis())
		if err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("redis://127.0.0.1:%d", cfg.ports.redis()), redis.stop, nil
	}
	var nodes []*process
	stop := func() {
		for _, n := range nodes {
			n.stop()
		}
	}
	create := []string{"--cluster", "create"}
	for i := range 3 {
		port := cfg.ports.clusterNode(i)
		n, err := startRedis(ctx, cfg, fmt.Sprintf("cluster-%d", i), port, "--cluster-enabled", "yes",
			"--cluster-config-file", cfg.workPath(fmt.Sprintf("cluster-%d.conf", i)))
		if err != nil {
			stop()
			return "", nil, err
		}
		nodes = append(nodes, n)
		create = append(create, fmt.Sprintf("127.0.0.1:%d", port))
	}
	if out, err := exec.CommandContext(ctx, "redis-cli", append(create, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		stop()
		return "", nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := waitClusterOK(ctx, cfg); err != nil {
		stop()
		return "", nil, err
	}
	return fmt.Sprintf("redis://127.0.0.1:%d?addr=127.0.0.1:%d&addr=127.0.0.1:%d",
		cfg.ports.clusterNode(0), cfg.ports.clusterNode(1), cfg.ports.clusterNode(2)), stop, nil
}

// waitClusterOK waits until every node of the cluster says it is ok.
func waitClusterOK(ctx context.Context, cfg *config) error {
	deadline := time.Now().Add(20 * time.Second)
	for i := range 3 {
		port := strconv.Itoa(cfg.ports.clusterNode(i))
		for !strings.Contains(commandOutput(ctx, "redis-cli", "-p", port, "cluster", "info"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				return fmt.Errorf("the Redis Cluster is not ok after 20 s (node %s)", port)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// fleetSites are the three gateways' custom_auth sites, with shared_cache when
// sharedURL is set.
func fleetSites(p ports, sharedURL string) (a, b, c site) {
	body := fmt.Sprintf("custom_auth {\n\tbot bench {\n\t\tauth_url http://127.0.0.1:%d/ca\n\t\twhitelist shop.example.com\n\t}\n", p.api())
	what := "custom_auth, alone"
	if sharedURL != "" {
		body += fmt.Sprintf("\tshared_cache %s {\n\t\ttimeout %s\n\t}\n", sharedURL, sharedTimeout)
		what = "custom_auth, shared_cache"
	}
	body += fmt.Sprintf("}\nreverse_proxy 127.0.0.1:%d", p.backend())
	a = site{name: "A", what: what, port: p.site(0), kind: customAuth, cached: true, body: body}
	b = site{name: "B", what: what, port: p.site(1), kind: customAuth, cached: true, body: body}
	c = site{name: "C", what: what, port: p.site(2), kind: customAuth, cached: true, body: body}
	return a, b, c
}

// measureFleet starts the servers and gateway A (a stack), then gateways B and C, and
// sends each visitor to A, B, C and A again, one request at a time.
func measureFleet(ctx context.Context, cfg *config, shared, sharedURL string, firstVisitor int) (fleetRun, error) {
	run := fleetRun{shared: shared}
	name := "fleet-" + strings.NewReplacer(" ", "", ",", "-").Replace(run.label())
	a, b, c := fleetSites(cfg.ports, sharedURL)
	s, err := startStack(ctx, cfg, name+"-A", stackOptions{apiLatency: cfg.apiLatency}, a)
	if err != nil {
		return run, err
	}
	defer s.stop()
	var others []*process
	for _, st := range []site{b, c} {
		p, err := startGateway(ctx, cfg, s, name, st)
		if err != nil {
			return run, err
		}
		defer p.stop()
		others = append(others, p)
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
		}{{a, &run.first}, {b, &run.other}, {c, &run.other}, {a, &run.repeat}} {
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
	run.moduleLog = s.moduleLog()
	for _, p := range others {
		run.moduleLog = append(run.moduleLog, moduleLogOf(p)...)
	}
	progress("fleet (%s): %d visitors, %.2f API calls per visitor; first request p50 %.2f ms, on the other gateway p50 %.2f ms",
		run.label(), cfg.fleetVisitors, run.callsPerVisitor(), ms(percentile(run.first, 50)), ms(percentile(run.other, 50)))
	return run, nil
}

// startGateway runs another gateway of the fleet, a Caddy process of its own, and
// waits until it answers.
func startGateway(ctx context.Context, cfg *config, s *stack, name string, st site) (*process, error) {
	caddyfilePath := cfg.workPath(name + "-" + st.name + ".Caddyfile")
	if err := os.WriteFile(caddyfilePath, []byte(caddyfile(0, st)), 0o600); err != nil {
		return nil, err
	}
	home := cfg.workPath("home")
	p, err := startProcess("Caddy (gateway "+st.name+")", cfg.workPath(name+"-"+st.name+".caddy.log"),
		[]string{"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/config", "XDG_DATA_HOME=" + home + "/data"},
		cfg.caddyBin, "run", "--config", caddyfilePath, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p, s.url(st)); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (r fleetRun) label() string {
	if r.shared != "" {
		return r.shared
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
func startRedis(ctx context.Context, cfg *config, name string, port int, args ...string) (*process, error) {
	p, err := startProcess("redis-server", cfg.workPath(name+".log"), nil, "redis-server", append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"}, args...)...)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
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
	fmt.Fprintf(b, "\n## Fleet: three gateways, alone and sharing verdicts through Redis (one node, and a cluster of three shards)\n\n")
	fmt.Fprintf(b, "%d distinct visitors, one request at a time: each visitor's first request on gateway A, the next ones on gateways B and C (three Caddy processes, as a load balancer would spread them), a last one on A again. The identity API answers after %s; shared_cache `timeout %s`; %s on 127.0.0.1.\n\n",
		res.visitors, c.apiLatency, sharedTimeout, res.redisVersion)
	t := newTable("gateways", "API calls per visitor>", "first request, A: p50 ms>", "p99 ms>", "next requests, B and C: p50 ms>", "p99 ms>", "last, A again: p50 ms>")
	for _, run := range res.runs {
		t.add(run.label(), f2(run.callsPerVisitor()),
			f2(ms(percentile(run.first, 50))), f2(ms(percentile(run.first, 99))),
			f2(ms(percentile(run.other, 50))), f2(ms(percentile(run.other, 99))),
			f2(ms(percentile(run.repeat, 50))))
	}
	b.WriteString(t.String())
	if len(res.runs) > 1 {
		alone := res.runs[0]
		for _, shared := range res.runs[1:] {
			fmt.Fprintf(b, "\n- %s: a visitor costs the identity API %.2f calls on three gateways (alone: %.2f). A shared-cache miss (a GET before the API call, a SET after it) adds %.2f ms at p50 and %.2f ms at p99 to a local miss; a request on another gateway takes %.2f ms at p50 from the shared cache, instead of %.2f ms through the identity API.",
				shared.label(), shared.callsPerVisitor(), alone.callsPerVisitor(),
				ms(percentile(shared.first, 50)-percentile(alone.first, 50)), ms(percentile(shared.first, 99)-percentile(alone.first, 99)),
				ms(percentile(shared.other, 50)), ms(percentile(alone.other, 50)))
		}
		b.WriteString("\n")
	}
	for _, run := range res.runs {
		for _, line := range run.moduleLog {
			fmt.Fprintf(b, "- Warning: fleet (%s), Caddy's log, custom_auth: %s\n", run.label(), line)
		}
	}
}
