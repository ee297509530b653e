package main

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/bench/fixture"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		values []float64
		want   float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1, 1000, 11}, 10},
	} {
		in := slices.Clone(tc.values)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.values, got, tc.want)
		}
		if !slices.Equal(in, tc.values) {
			t.Errorf("median reordered its input: %v", in)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

// run10s is a run of 10 s that completed 50,000 requests.
func run10s() loadRun {
	return loadRun{Wrk: wrkResult{Requests: 50000, Duration: 10 * time.Second}}
}

func TestPerRequestFigures(t *testing.T) {
	r := run10s()
	r.CaddyTicks = 700   // 7 s of CPU
	r.ServersTicks = 250 // 2.5 s
	r.Upstream = fixture.Stats{CA: 40000, Check: 10000}
	r.Wrk.Non2xx, r.Wrk.SocketErrors = 2, 3
	r.CaddyMemory.PeakRSSKiB = 81920
	for name, got := range map[string]float64{
		"throughput": r.throughput(), "caddyCPU": r.caddyCPU(), "serversCPU": r.serversCPU(),
		"apiCallsPerRequest": r.apiCallsPerRequest(), "errors": float64(r.errors()), "peakRSSMiB": r.peakRSSMiB(),
	} {
		want := map[string]float64{
			"throughput": 5000, "caddyCPU": 140, "serversCPU": 50,
			"apiCallsPerRequest": 1, "errors": 5, "peakRSSMiB": 80,
		}[name]
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestOtherLoad(t *testing.T) {
	r := run10s() // 2 cores for 10 s: 2,000 ticks
	r.CaddyTicks, r.ServersTicks, r.HarnessTicks, r.Wrk.CPUTicks = 900, 300, 10, 590
	r.MachineTicks = 1800 + 100
	if got := r.otherLoad(2); math.Abs(got-5) > 1e-9 {
		t.Errorf("otherLoad = %v, want 5 (100 of 2,000 ticks)", got)
	}
	// Readings a tick apart can make the difference negative: nobody else ran.
	r.MachineTicks = 1790
	if got := r.otherLoad(2); got != 0 {
		t.Errorf("otherLoad = %v, want 0", got)
	}
}

func TestVerified(t *testing.T) {
	r := run10s()
	r.Upstream = fixture.Stats{Backend: 100, BackendContact: 90, BackendUser: 80}
	for _, tc := range []struct {
		kind       siteKind
		verified   int64
		ok         bool
		unverified int64
	}{
		{plainProxy, 0, false, 0},
		{forwardAuth, 80, true, 20},
		{customAuth, 90, true, 10},
		{staticContact, 90, true, 10},
		{respondOK, 0, false, 0},
	} {
		st := site{kind: tc.kind}
		n, ok := r.verified(st)
		if n != tc.verified || ok != tc.ok || r.unverified(st) != tc.unverified {
			t.Errorf("kind %d: verified %d, %v, unverified %d; want %d, %v, %d",
				tc.kind, n, ok, r.unverified(st), tc.verified, tc.ok, tc.unverified)
		}
	}
}

func TestCheckLoadRun(t *testing.T) {
	c := site{name: "C", kind: customAuth}
	r := run10s()
	r.Upstream = fixture.Stats{Backend: 1000, BackendContact: 1000 - 64}
	if err := checkLoadRun(c, r, 64); err != nil {
		t.Errorf("64 unverified with 64 connections: %v", err)
	}
	r.Upstream.BackendContact--
	if err := checkLoadRun(c, r, 64); err == nil {
		t.Error("65 unverified with 64 connections passed")
	}
	r.Upstream = fixture.Stats{}
	if err := checkLoadRun(site{name: "A", kind: plainProxy}, r, 64); err == nil {
		t.Error("a proxy whose backend got nothing passed")
	}
	if err := checkLoadRun(site{name: "E", kind: respondOK}, r, 64); err != nil {
		t.Errorf("respond, no backend: %v", err)
	}
}

// runsOf builds site runs of the given throughputs (requests per second over 1 s) and
// Caddy CPU (µs per request), one per round, in round order.
func runsOf(name string, rps, cpuMicros []float64) []siteRun {
	var runs []siteRun
	for i := range rps {
		r := loadRun{Wrk: wrkResult{Requests: int64(rps[i]), Duration: time.Second}}
		r.CaddyTicks = int64(cpuMicros[i] * rps[i] * clockTicksPerSecond / 1e6)
		runs = append(runs, siteRun{round: i + 1, site: site{name: name}, run: r})
	}
	return runs
}

func TestRatio(t *testing.T) {
	runs := append(runsOf("C", []float64{9000, 10000, 11000}, []float64{100, 120, 110}),
		runsOf("A", []float64{10000, 10000, 10000}, []float64{100, 100, 100})...)
	tp := newRatio(runs, "C", "A", throughputFigure)
	if tp.x != "C" || tp.y != "A" || math.Abs(tp.ofMedian-1.0) > 1e-9 {
		t.Errorf("throughput C/A of medians = %v, want 1.0", tp.ofMedian)
	}
	if want := []float64{0.9, 1.0, 1.1}; !approxEqual(tp.perRound, want) {
		t.Errorf("throughput per round = %v, want %v", tp.perRound, want)
	}
	cpu := newRatio(runs, "C", "A", caddyCPUFigure)
	if math.Abs(cpu.ofMedian-1.1) > 1e-9 || !approxEqual(cpu.perRound, []float64{1.0, 1.2, 1.1}) {
		t.Errorf("CPU C/A = %v per round %v, want 1.1 and 1.0, 1.2, 1.1", cpu.ofMedian, cpu.perRound)
	}
}

func approxEqual(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Abs(x-y) < 1e-9 })
}
