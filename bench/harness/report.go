package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// report is everything a run found, ready to be written out.
type report struct {
	cfg     *config
	env     environment
	sites   *sitesResult
	latency []latencyRun
	memory  *memoryResult
	fleet   *fleetResult
	nginx   *nginxResult
	handler []string // the Go benchmarks' result lines
}

// environment is where and with what the benchmark ran.
type environment struct {
	date, cpuModel, kernel      string
	goVersion, caddy, wrk, tree string
	cores                       int
}

func describeEnvironment(ctx context.Context, cfg *config) environment {
	e := environment{
		date:      time.Now().UTC().Format("2006-01-02 15:04:05 UTC"),
		cpuModel:  "unknown CPU",
		kernel:    strings.TrimSpace(readText("/proc/sys/kernel/osrelease")),
		goVersion: runtime.Version(),
		caddy:     firstFields(commandOutput(ctx, cfg.caddyBin, "version"), 1),
		wrk:       firstFields(commandOutput(ctx, "wrk", "-v"), 2),
		cores:     cfg.cores,
	}
	for _, line := range strings.Split(readText("/proc/cpuinfo"), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			e.cpuModel = strings.TrimSpace(value)
			break
		}
	}
	e.tree = treeDescription(commandOutput(ctx, "git", "rev-parse", "--short", "HEAD"),
		commandOutput(ctx, "git", "status", "--porcelain"))
	return e
}

// treeDescription names the commit measured from git's answers, and says whether the
// working tree differed from it.
func treeDescription(revParse, statusPorcelain string) string {
	tree := firstFields(revParse, 1)
	if tree == "" || strings.HasPrefix(tree, "fatal") {
		tree = "unknown commit"
	}
	if strings.TrimSpace(statusPorcelain) != "" {
		tree += " + uncommitted changes"
	}
	return tree
}

func readText(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// commandOutput is a command's output, whatever its exit status (wrk -v exits 1).
func commandOutput(ctx context.Context, name string, args ...string) string {
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out)
}

// firstFields is the first n words of the first line of s.
func firstFields(s string, n int) string {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	return strings.Join(f[:min(n, len(f))], " ")
}

// markdown is the whole report, for RESULTS.md.
func (r *report) markdown() string {
	var b bytes.Buffer
	c, e := r.cfg, r.env
	fmt.Fprintf(&b, "# custom_auth benchmark\n\n")
	fmt.Fprintf(&b, "- Command: `%s` (scenarios: %s)\n", c.command, strings.Join(c.scenarios, ", "))
	fmt.Fprintf(&b, "- Date: %s\n", e.date)
	fmt.Fprintf(&b, "- Machine: %d cores, %s, Linux %s\n", e.cores, e.cpuModel, e.kernel)
	fmt.Fprintf(&b, "- Go %s, Caddy %s, %s, tree %s\n", e.goVersion, e.caddy, e.wrk, e.tree)
	r.writeResults(&b, true)
	return b.String()
}

// summary is what the terminal shows at the end: the report without the per-run table
// and the notes.
func (r *report) summary() string {
	var b bytes.Buffer
	r.writeResults(&b, false)
	return b.String()
}

// writeResults writes the sections of the scenarios that ran; full adds the sites'
// per-run table and notes.
func (r *report) writeResults(b *bytes.Buffer, full bool) {
	if r.sites != nil {
		r.writeSites(b, full)
	}
	if r.latency != nil {
		r.writeLatency(b)
	}
	if r.memory != nil {
		r.writeMemory(b)
	}
	if r.fleet != nil {
		r.writeFleet(b)
	}
	if r.nginx != nil {
		r.writeNginx(b)
	}
	if r.handler != nil {
		r.writeHandler(b)
	}
}

// ratioTarget is a ratio the report shows, with the product's target for its
// throughput (0: none).
type ratioTarget struct {
	x, y   string
	target float64
	means  string
}

// verdict says whether a throughput ratio meets the target, "-" when there is none.
func (rt ratioTarget) verdict(throughput float64) string {
	if rt.target <= 0 {
		return "-"
	}
	verdict := "NOT met"
	if throughput >= rt.target {
		verdict = "met"
	}
	return verdict + fmt.Sprintf(" (throughput >= %g)", rt.target)
}

var ratios = []ratioTarget{
	{"C", "A", 0.97, "custom_auth on the everyday path (cached identity) over a bare proxy"},
	{"C", "H", 0, "custom_auth over a proxy that adds the same contact headers for free"},
	{"D", "B", 1.0, "custom_auth asking the API every time over forward_auth doing the same"},
	{"C", "B", 0, "what caching buys over forward_auth"},
}

func (r *report) writeSites(b *bytes.Buffer, full bool) {
	c := r.cfg
	fmt.Fprintf(b, "\n## Sites\n\n")
	fmt.Fprintf(b, "`wrk -t%d -c%d -d%s` per run, the same access token on every request; rounds %s interleaved, %d round(s), after a %s warm-up per site.\n\n",
		c.threads, c.conns, seconds(c.duration), strings.Join(strings.Split(siteOrder, ""), " "), c.rounds, seconds(c.warmup))
	r.writeSiteMedians(b)
	r.writeRatios(b)
	if !full {
		return
	}
	r.writeEveryRun(b)
	r.writeSiteNotes(b)
	r.writeSiteWarnings(b)
}

// writeSiteMedians is the table of each site's medians over the rounds.
func (r *report) writeSiteMedians(b *bytes.Buffer) {
	res, c := r.sites, r.cfg
	fmt.Fprintf(b, "### Medians per site\n\n")
	t := newTable("site", "what", "req/s>", "p50 ms>", "p99 ms>", "Caddy CPU µs/req>", "servers CPU µs/req>",
		"API calls/req>", "peak RSS MiB>", "errors (all runs)>", "max other load %>")
	for _, st := range res.sites {
		var rss, other float64
		var errs int64
		for _, sr := range res.runs {
			if sr.site.name == st.name {
				rss = max(rss, sr.run.peakRSSMiB())
				other = max(other, sr.run.otherLoad(c.cores))
				errs += sr.run.errors()
			}
		}
		med := func(f figure) float64 { return median(ofSite(res.runs, st.name, f)) }
		t.add(st.name, st.what, f0(med(throughputFigure)),
			f2(med(func(r loadRun) float64 { return ms(r.Wrk.P50) })),
			f2(med(func(r loadRun) float64 { return ms(r.Wrk.P99) })),
			f1(med(caddyCPUFigure)), f1(med(loadRun.serversCPU)), f2(med(loadRun.apiCallsPerRequest)),
			f1(rss), fmt.Sprint(errs), f0(other))
	}
	b.WriteString(t.String())
}

// writeRatios is the table of the ratios between sites, against their targets.
func (r *report) writeRatios(b *bytes.Buffer) {
	res := r.sites
	fmt.Fprintf(b, "\n### Ratios\n\n")
	t := newTable("ratio", "throughput (medians)>", "throughput per round", "Caddy CPU µs/req (medians)>", "CPU per round", "target", "what it tells")
	for _, rt := range ratios {
		tp := newRatio(res.runs, rt.x, rt.y, throughputFigure)
		cpu := newRatio(res.runs, rt.x, rt.y, caddyCPUFigure)
		t.add(rt.x+"/"+rt.y, f3(tp.ofMedian), joinFloats(tp.perRound, f3), f2(cpu.ofMedian), joinFloats(cpu.perRound, f2), rt.verdict(tp.ofMedian), rt.means)
	}
	b.WriteString(t.String())
	fmt.Fprintf(b, "\nThroughput ratios above 1 mean the first site is faster; CPU ratios above 1 mean it\ncosts Caddy more CPU per request.\n")
}

// writeEveryRun is the table of every run of every site.
func (r *report) writeEveryRun(b *bytes.Buffer) {
	res, c := r.sites, r.cfg
	fmt.Fprintf(b, "\n### Every run\n\n")
	t := newTable("round>", "site", "req/s>", "p50 ms>", "p99 ms>", "Caddy CPU µs/req>", "servers CPU µs/req>",
		"API calls/req>", "verified/reached backend>", "backend conns>", "peak RSS MiB>", "errors>", "other load %>")
	for _, sr := range res.runs {
		run := sr.run
		t.add(fmt.Sprint(sr.round), sr.site.name, f0(run.throughput()), f3(ms(run.Wrk.P50)), f3(ms(run.Wrk.P99)),
			f2(run.caddyCPU()), f2(run.serversCPU()), f3(run.apiCallsPerRequest()), verifiedCell(sr.site, run),
			fmt.Sprint(run.Upstream.BackendConns), f1(run.peakRSSMiB()), fmt.Sprint(run.errors()), f0(run.otherLoad(c.cores)))
	}
	b.WriteString(t.String())
}

// writeSiteNotes explains the figures.
func (r *report) writeSiteNotes(b *bytes.Buffer) {
	res, c := r.sites, r.cfg
	fmt.Fprintf(b, "\n### Notes\n\n")
	for _, note := range []string{
		fmt.Sprintf("wrk, Caddy and the bench servers (backend and identity API in one process) share the machine's %d cores, so a site that makes Caddy do more work per request also takes CPU away from wrk and the servers. Throughput here is CPU-bound, not network-bound; CPU µs per request is the most transferable number.", c.cores),
		fmt.Sprintf("Caddy CPU µs/req is utime+stime of the Caddy process (/proc/<pid>/stat) over the run divided by the requests wrk completed (clock ticks of 1/%d s). Servers CPU is the same for the backend and identity API process.", clockTicksPerSecond),
		fmt.Sprintf("Other load %% is the machine's busy CPU during the run (/proc/stat) that was neither Caddy, the servers, wrk nor the harness, as a share of all %d cores: work of other processes. Above a few percent, the run was disturbed and its throughput and latency are not comparable.", c.cores),
		"API calls/req counts identity API calls (POST /ca and GET /check) per completed request. The requests still in flight when wrk stops made their call but are not completed, so one call per request shows as slightly above 1.",
		fmt.Sprintf("verified/reached backend: requests that reached the backend carrying the identity (X-Contact-Id for C, D and H, X-User-Id for B). The run fails if more than CONNS (%d) miss it: only requests in flight when wrk stops may. Before and after the runs, the harness checked what the backend receives: from C, D and H exactly the contact headers of the identity API's answer, the very same request from H as from C (H without the access token, as the SPEC has custom_auth remove it); nothing from a wrong token with a forged X-Contact-Id; from B, X-User-Id; C answers a repeated visitor from its cache, D asks the API every time.", c.conns),
		"H is the physical limit of handing the contact to the backend: `reverse_proxy` with the contact headers of a verified C request set by `request_header`, and the access token removed, with no identity work at all. C/H is the price of finding the contact; H/A the price of forwarding it.",
		fmt.Sprintf("backend conns: TCP connections the backend accepted during the run. Stock reverse_proxy keeps at most 32 idle connections per upstream, fewer than the %d concurrent requests, so sites A to D and H open new backend connections under load (and B new identity API connections too); it is Caddy's default and the same for every site.", c.conns),
		"D also sets `negative_ttl 0`: with `cache_ttl 0` alone a rejection would still be cached. Concurrent requests for the same token share one API call whatever the TTLs, so D's API calls/req may come out below 1.",
		peakRSSNote(res.peakRSSReset),
	} {
		fmt.Fprintf(b, "- %s\n", note)
	}
}

// writeSiteWarnings warns of whatever disturbed the runs.
func (r *report) writeSiteWarnings(b *bytes.Buffer) {
	res, c := r.sites, r.cfg
	for _, st := range res.sites {
		other := 0.0
		for _, sr := range res.runs {
			if sr.site.name == st.name {
				other = max(other, sr.run.otherLoad(c.cores))
			}
		}
		if other > 10 {
			fmt.Fprintf(b, "- Warning: other processes used up to %.0f%% of the machine during site %s's runs: its numbers are disturbed.\n", other, st.name)
		}
	}
	for _, w := range res.fellBack {
		fmt.Fprintf(b, "- Warning: %s (custom_auth's circuit breaker after a load run); the measured run started verified.\n", w)
	}
	if len(res.tokenPassedOn) > 0 {
		fmt.Fprintf(b, "- Warning: custom_auth handed the visitor's access token on to the backend (site %s); the SPEC has it removed unless `pass_token`. H removes it, so C/H includes that removal.\n",
			strings.Join(res.tokenPassedOn, ", "))
	}
	for _, line := range res.moduleLog {
		fmt.Fprintf(b, "- Warning: Caddy's log, custom_auth: %s\n", line)
	}
}

func peakRSSNote(reset bool) string {
	if reset {
		return "Peak RSS is Caddy's VmHWM during each run (reset before every run by writing 5 to /proc/<pid>/clear_refs), the highest over the rounds. It is process-wide: Go keeps freed heap for a while, so a site's peak includes what earlier runs left behind."
	}
	return "Peak RSS is Caddy's VmHWM, which could not be reset on this machine: it is process-wide and cumulative, so each site shows the highest value seen up to and including its runs, not its own peak."
}

func verifiedCell(st site, run loadRun) string {
	n, ok := run.verified(st)
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%d/%d", n, run.Upstream.Backend)
}

func (r *report) writeLatency(b *bytes.Buffer) {
	c := r.cfg
	fmt.Fprintf(b, "\n## Latency: a new visitor on every request, identity API answering after %s\n\n", c.apiLatency)
	fmt.Fprintf(b, "`wrk -t%d -c<conns> -d%s`, a new access token on every request (every request is an identity API call); a fresh Caddy and fresh servers for every run.\n\n", c.threads, seconds(c.duration))
	t := newTable("site", "what", "wrk conns>", "req/s>", "bound req/s>", "p50 ms>", "p99 ms>", "API calls/req>", "API conns accepted>",
		"API conns open at most>", "API conns per 1000 req>", "Caddy CPU µs/req>", "verified/reached backend>", "errors>", "other load %>")
	for _, lr := range r.latency {
		run := lr.run
		t.add(lr.site.name, lr.site.what, fmt.Sprint(lr.conns), f0(run.throughput()), latencyBound(lr.conns, c.apiLatency), f1(ms(run.Wrk.P50)), f1(ms(run.Wrk.P99)),
			f3(run.apiCallsPerRequest()), fmt.Sprint(run.Upstream.APIConns), fmt.Sprint(run.Upstream.APIConnsMaxOpen),
			f1(float64(run.Upstream.APIConns)*1000/float64(run.Wrk.Requests)), f1(run.caddyCPU()),
			verifiedCell(lr.site, run), fmt.Sprint(run.errors()), f0(run.otherLoad(c.cores)))
	}
	b.WriteString(t.String())
	fmt.Fprintf(b, "\n- API conns accepted: TCP connections the identity API accepted during the run (http.Server.ConnState in bench/servers); open at most: the most open at once. A client pool that keeps as many idle connections as there are concurrent calls opens each connection once; a smaller one closes and reopens connections for the calls beyond it, which shows as API conns per 1000 requests well above 0.\n")
	fmt.Fprintf(b, "- custom_auth's identity API client keeps up to 256 idle connections per host (`MaxIdleConnsPerHost` in identity.go); forward_auth, a reverse_proxy, keeps 32.\n")
	fmt.Fprintf(b, "- Bound: with N concurrent requests each waiting %s for the identity API, throughput cannot exceed N / %s.\n", c.apiLatency, c.apiLatency)
	for _, lr := range r.latency {
		for _, line := range lr.moduleLog {
			fmt.Fprintf(b, "- Warning: site %s at %d connections, Caddy's log, custom_auth: %s\n", lr.site.name, lr.conns, line)
		}
	}
}

// latencyBound is the most requests per second conns concurrent requests can make when
// each waits latency.
func latencyBound(conns int, latency time.Duration) string {
	if latency <= 0 {
		return "-"
	}
	return f0(float64(conns) / latency.Seconds())
}

func (r *report) writeMemory(b *bytes.Buffer) {
	c, res := r.cfg, r.memory
	fmt.Fprintf(b, "\n## Memory: distinct visitors filling the cache\n\n")
	fmt.Fprintf(b, "Site A (bare `reverse_proxy`), then site C (custom_auth, default `cache_size` (64MB, 64,000,000 bytes) and `cache_ttl`), each in a fresh Caddy under the same load: `wrk -t%d -c%d -d%s` with a new access token on every request, identity API answering at once with a small contact (id, name, email, phone_number, two-key metadata). Caddy runs with `GODEBUG=gctrace=1 GOGC=100` and no `GOMEMLIMIT` (C once more with it when `MEMORY_GOMEMLIMIT` is set).\n\n",
		c.threads, c.conns, seconds(c.memoryDuration))
	t := newTable("site", "GOMEMLIMIT", "visitors sent>", "API calls>", "req/s>", "idle live heap MiB>", "live heap after run MiB>",
		"gctrace live heap last / max MiB>", "gctrace heap goal max MiB>", "GC cycles>", "GC CPU % since start>", "GC share of the run's CPU %>", "VmHWM MiB>", "VmRSS MiB>",
		"Caddy CPU µs/req>", "errors>", "other load %>")
	for _, m := range res.runs {
		run := m.run
		t.add(m.site.name, orNone(m.limit), fmt.Sprint(run.Wrk.Sent), fmt.Sprint(run.Upstream.CA), f0(run.throughput()),
			f1(mib(m.idleHeap)), f1(mib(m.loadedHeap)), fmt.Sprintf("%d / %d", m.gc.LastLiveMB, m.gc.MaxLiveMB),
			fmt.Sprint(m.gc.MaxGoalMB), fmt.Sprint(m.gc.Cycles), fmt.Sprint(m.gc.CPUPercent), f1(m.gcShare()),
			f1(run.peakRSSMiB()), f1(float64(run.CaddyMemory.RSSKiB)/1024), f1(run.caddyCPU()),
			fmt.Sprint(run.errors()), f0(run.otherLoad(c.cores)))
	}
	b.WriteString(t.String())
	r.writeMemoryGoals(b)
	fmt.Fprintf(b, "\n- Idle and after-run live heap: `HeapAlloc` of Caddy's heap profile right after a forced collection (admin API `/debug/pprof/heap?gc=1&debug=1`), before the load and after it (with what the cache still holds). custom_auth keeps verdicts in memory mapped outside the Go heap, which this figure does not count and VmHWM does.\n")
	fmt.Fprintf(b, "- gctrace figures cover the collections during the load: live heap is the N of `a->b->N MB` (MiB); GC CPU %% since start is the last line's `N%%` (GC's CPU over all cores' time since Caddy started); GC share of the run's CPU is the sum of the run's `ms cpu` parts over Caddy's CPU (utime+stime) during the run.\n")
	fmt.Fprintf(b, "- VmHWM and VmRSS are from /proc/<pid>/status right after the load; VmHWM was reset before it (clear_refs), so it is the peak under load.\n")
	fmt.Fprintf(b, "- Visitors sent counts the distinct access tokens wrk sent (one per request); API calls, the identity API calls they caused. The cache is full once the visitors' verdicts (about 500 bytes each) pass cache_size: from about 130,000 visitors.\n")
	fmt.Fprintf(b, "- Zipf hit ratio: custom_auth's TestZipfHitRatio plays one request sequence through the verdict store and through the ristretto store it replaced (TinyLFU admission, each verdict charged at its heap): %s.\n", strings.TrimSpace(res.zipf.line))
	for _, m := range res.runs {
		for _, line := range m.moduleLog {
			fmt.Fprintf(b, "- Warning: site %s, GOMEMLIMIT %s, Caddy's log, custom_auth: %s\n", m.site.name, orNone(m.limit), line)
		}
	}
}

// writeMemoryGoals is the memory scenario's figures against their targets: what a
// byte of cache_size costs in peak RSS, GC's share of CPU, and the hit ratio.
func (r *report) writeMemoryGoals(b *bytes.Buffer) {
	res := r.memory
	var bare, auth *memoryRun
	for i := range res.runs {
		m := &res.runs[i]
		switch {
		case m.site.kind == plainProxy && bare == nil:
			bare = m
		case m.site.kind == customAuth && m.limit == "" && auth == nil:
			auth = m
		}
	}
	if bare == nil || auth == nil {
		return
	}
	fmt.Fprintf(b, "\n")
	t := newTable("figure", "value>", "target")
	overhead := float64(auth.run.CaddyMemory.PeakRSSKiB-bare.run.CaddyMemory.PeakRSSKiB) * 1024 / defaultCacheSize
	t.add("peak RSS per cache_size byte: (VmHWM of C − VmHWM of A) / 64,000,000", f2(overhead), goal(overhead <= 1.1, "<= 1.1"))
	t.add("GC share of CPU, gctrace's N% since start: C (A)", fmt.Sprintf("%d%% (%d%%)", auth.gc.CPUPercent, bare.gc.CPUPercent),
		goal(auth.gc.CPUPercent <= 2, "<= 2%"))
	t.add("GC CPU over Caddy's CPU during the run: C (A)", fmt.Sprintf("%s%% (%s%%)", f1(auth.gcShare()), f1(bare.gcShare())), "-")
	t.add("Zipf hit ratio: verdict store / replaced store", fmt.Sprintf("%.4f / %.4f", res.zipf.store, res.zipf.replaced),
		goal(res.zipf.store >= res.zipf.replaced, "no lower"))
	b.WriteString(t.String())
}

func goal(met bool, target string) string {
	if met {
		return "met (" + target + ")"
	}
	return "NOT met (" + target + ")"
}

// table is a markdown table; a column whose header ends in ">" is right-aligned.
type table struct {
	header []string
	right  []bool
	rows   [][]string
}

func newTable(columns ...string) *table {
	t := &table{}
	for _, c := range columns {
		name, right := strings.CutSuffix(c, ">")
		t.header = append(t.header, name)
		t.right = append(t.right, right)
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var b strings.Builder
	row := func(cells []string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	row(t.header)
	sep := make([]string, len(t.header))
	for i, right := range t.right {
		sep[i] = "---"
		if right {
			sep[i] = "---:"
		}
	}
	row(sep)
	for _, r := range t.rows {
		row(r)
	}
	return b.String()
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func f3(v float64) string { return fmt.Sprintf("%.3f", v) }

// seconds writes a whole-second duration as wrk takes it: 60s, not 1m0s.
func seconds(d time.Duration) string { return fmt.Sprintf("%ds", int(d/time.Second)) }

func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }

func joinFloats(values []float64, format func(float64) string) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = format(v)
	}
	return strings.Join(s, ", ")
}
