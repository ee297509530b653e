package main

import (
	"strings"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/bench/fixture"
)

func TestTreeDescription(t *testing.T) {
	for _, tc := range []struct{ revParse, status, want string }{
		{"9b2f39c\n", "", "9b2f39c"},
		{"9b2f39c\n", " M bench/run.sh\n", "9b2f39c + uncommitted changes"},
		{"9b2f39c\n", "?? bench/new.go\n", "9b2f39c + uncommitted changes"},
		{"fatal: not a git repository\n", "", "unknown commit"},
	} {
		if got := treeDescription(tc.revParse, tc.status); got != tc.want {
			t.Errorf("treeDescription(%q, %q) = %q, want %q", tc.revParse, tc.status, got, tc.want)
		}
	}
}

func testConfig() *config {
	c, err := loadConfig(envOf(map[string]string{"DURATION": "3s", "ROUNDS": "2"}))
	if err != nil {
		panic(err)
	}
	return c
}

// sitesRuns: two rounds of every site; C has 0.9 and 1.0 of A's throughput, D 1.1 of
// B's in both rounds.
func sitesRuns() *sitesResult {
	all := benchSites(ports{base: 18400})
	res := &sitesResult{peakRSSReset: true}
	rps := map[string][2]int64{"A": {10000, 10000}, "B": {6000, 6000}, "C": {9000, 10000}, "D": {6600, 6600}, "E": {40000, 40000}, "H": {9500, 9500}}
	for _, name := range siteOrder {
		res.sites = append(res.sites, all[string(name)])
	}
	for round := 1; round <= 2; round++ {
		for _, st := range res.sites {
			n := rps[st.name][round-1]
			run := loadRun{Wrk: wrkResult{Requests: n, Duration: time.Second, P50: 6 * time.Millisecond, P99: 20 * time.Millisecond}}
			run.CaddyTicks = n / 100 // 100 µs per request
			run.MachineTicks = run.CaddyTicks
			run.Upstream = fixture.Stats{Backend: n, BackendContact: n}
			res.runs = append(res.runs, siteRun{round: round, site: st, run: run})
		}
	}
	return res
}

func TestSitesReport(t *testing.T) {
	r := &report{cfg: testConfig(), env: environment{tree: "abc1234 + uncommitted changes"}, sites: sitesRuns()}
	md := r.markdown()
	for _, want := range []string{
		"tree abc1234 + uncommitted changes",
		"| C/A | 0.950 | 0.900, 1.000 | 1.00 | 1.00, 1.00 | NOT met (throughput >= 0.97) |",
		"| C/H | 1.000 | 0.947, 1.053 |",
		"| D/B | 1.100 | 1.100, 1.100 | 1.00 | 1.00, 1.00 | met (throughput >= 1) |",
		"| C/B | 1.583 | 1.500, 1.667 |",
		"| C | custom_auth, warm cache | 9500 | 6.00 | 20.00 | 100.0 |",
		"| 2 | C | 10000 |",
		"| 1 | H | 9500 | 6.000 | 20.000 | 100.00 | 0.00 | 0.000 | 9500/9500 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "Warning") {
		t.Errorf("a quiet run got a warning:\n%s", md)
	}
	if s := r.summary(); !strings.Contains(s, "| C/A | 0.950 |") || strings.Contains(s, "Every run") {
		t.Errorf("summary:\n%s", s)
	}
}

func TestSitesReportWarnings(t *testing.T) {
	res := sitesRuns()
	res.runs[0].run.MachineTicks += 30 // 15% of 2 cores over A's first second: 30 of 200 ticks
	res.fellBack = []string{"site D fell back for 2.0 s before round 2"}
	res.tokenPassedOn = []string{"C", "D"}
	res.moduleLog = []string{"identity API error: timeout (3x)"}
	md := (&report{cfg: testConfig(), sites: res}).markdown()
	for _, want := range []string{
		"other processes used up to 15% of the machine during site A's runs",
		"site D fell back for 2.0 s before round 2",
		"handed the visitor's access token on to the backend (site C, D)",
		"Caddy's log, custom_auth: identity API error: timeout (3x)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestLatencyAndMemoryReport(t *testing.T) {
	all := benchSites(ports{base: 18400})
	lat := loadRun{Wrk: wrkResult{Requests: 3500, Duration: 3 * time.Second, P50: 53 * time.Millisecond, P99: 95 * time.Millisecond}}
	lat.Upstream = fixture.Stats{CA: 3560, APIConns: 63, APIConnsMaxOpen: 64, Backend: 3500, BackendContact: 3500}
	mem := loadRun{Wrk: wrkResult{Requests: 200000, Sent: 200064, Duration: 60 * time.Second}}
	mem.Upstream = fixture.Stats{CA: 200064, Backend: 200000, BackendContact: 200000}
	mem.CaddyMemory = memoryStatus{PeakRSSKiB: 200 * 1024, RSSKiB: 190 * 1024}
	mem.CaddyTicks = 6000 // 60 s of CPU
	bare := mem
	bare.CaddyMemory = memoryStatus{PeakRSSKiB: 140 * 1024, RSSKiB: 130 * 1024}
	r := &report{
		cfg:     testConfig(),
		latency: []latencyRun{{site: all["C"], conns: 64, run: lat}},
		memory: &memoryResult{
			runs: []memoryRun{
				{site: all["A"], idleHeap: 5 << 20, loadedHeap: 6 << 20, run: bare, gc: gcSummary{Cycles: 300, LastLiveMB: 6, MaxLiveMB: 7, MaxGoalMB: 12, CPUPercent: 1, CPUMillis: 600}},
				{site: all["C"], idleHeap: 7 << 20, loadedHeap: 9 << 20, run: mem, gc: gcSummary{Cycles: 200, LastLiveMB: 9, MaxLiveMB: 10, MaxGoalMB: 20, CPUPercent: 2, CPUMillis: 900}},
				{site: all["C"], limit: "128MiB", idleHeap: 7 << 20, loadedHeap: 80 << 20, run: mem,
					gc: gcSummary{Cycles: 90, LastLiveMB: 78, MaxLiveMB: 81, MaxGoalMB: 160, CPUPercent: 9}},
			},
			zipf: zipfResult{store: 0.8746, replaced: 0.8649, line: " (s=1.1, 1000000 visitors)"},
		},
	}
	md := r.markdown()
	for _, want := range []string{
		"identity API answering after 50ms",
		"| C | custom_auth, warm cache | 64 | 1167 | 1280 | 53.0 | 95.0 | 1.017 | 63 | 64 | 18.0 |",
		"| C | 128MiB | 200064 | 200064 | 3333 | 7.0 | 80.0 | 78 / 81 | 160 | 90 | 9 | 0.0 | 200.0 | 190.0 |",
		"| A | none | 200064 | 200064 | 3333 | 5.0 | 6.0 | 6 / 7 | 12 | 300 | 1 | 1.0 | 140.0 | 130.0 |",
		// (200 − 140) MiB over 64,000,000 bytes
		"| peak RSS per cache_size byte: (VmHWM of C − VmHWM of A) / 64,000,000 | 0.98 | met (<= 1.1) |",
		"| GC share of CPU, gctrace's N% since start: C (A) | 2% (1%) | met (<= 2%) |",
		"| GC CPU over Caddy's CPU during the run: C (A) | 1.5% (1.0%) | - |",
		"| Zipf hit ratio: verdict store / replaced store | 0.8746 / 0.8649 | met (no lower) |",
		"replaced (TinyLFU admission, each verdict charged at its heap): (s=1.1, 1000000 visitors).",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "## Sites") {
		t.Error("a report without the sites scenario has its section")
	}
}

func TestParseZipf(t *testing.T) {
	out := []byte("=== RUN   TestZipfHitRatio\n    hitratio_test.go:33: zipf hit ratio: store=0.8746 replaced=0.8649 (s=1.1, 1000000 visitors)\n--- PASS: TestZipfHitRatio (17.94s)\nPASS\n")
	z, err := parseZipf(out)
	if err != nil || z.store != 0.8746 || z.replaced != 0.8649 || z.line != " (s=1.1, 1000000 visitors)" {
		t.Errorf("parseZipf = %+v, %v", z, err)
	}
	if _, err := parseZipf([]byte("--- SKIP: TestZipfHitRatio\n")); err == nil {
		t.Error("a skipped test gave hit ratios")
	}
}
