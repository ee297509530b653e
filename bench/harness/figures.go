package main

import (
	"math"
	"slices"
)

// The figures of one run, all derived from what measure recorded.

// throughput is completed requests per second.
func (r loadRun) throughput() float64 {
	return float64(r.Wrk.Requests) / r.Wrk.Duration.Seconds()
}

// microsPerRequest turns CPU clock ticks over the run into µs per completed request.
func (r loadRun) microsPerRequest(ticks int64) float64 {
	return float64(ticks) * 1e6 / clockTicksPerSecond / float64(r.Wrk.Requests)
}

func (r loadRun) caddyCPU() float64   { return r.microsPerRequest(r.CaddyTicks) }
func (r loadRun) serversCPU() float64 { return r.microsPerRequest(r.ServersTicks) }

// apiCallsPerRequest counts both kinds of identity API calls (custom_auth's POST /ca,
// forward_auth's GET /check) per completed request.
func (r loadRun) apiCallsPerRequest() float64 {
	return float64(r.Upstream.CA+r.Upstream.Check) / float64(r.Wrk.Requests)
}

// errors are answers of 400 and above and socket errors.
func (r loadRun) errors() int64 { return r.Wrk.Non2xx + r.Wrk.SocketErrors }

// otherLoad is the share of the machine (all cores) that went to other processes than
// Caddy, the bench servers, wrk and the harness during the run, in percent. Above a few
// percent, someone else's work disturbed the run.
func (r loadRun) otherLoad(cores int) float64 {
	other := r.MachineTicks - r.CaddyTicks - r.ServersTicks - r.HarnessTicks - r.Wrk.CPUTicks
	capacity := r.Wrk.Duration.Seconds() * clockTicksPerSecond * float64(cores)
	return max(0, float64(other)*100/capacity)
}

// verified counts the backend requests of the run that carried the identity the site
// hands on; ok is false for a site that hands on none.
func (r loadRun) verified(st site) (n int64, ok bool) {
	switch st.kind {
	case forwardAuth:
		return r.Upstream.BackendUser, true
	case customAuth, staticContact:
		return r.Upstream.BackendContact, true
	}
	return 0, false
}

// unverified counts the backend requests of the run without the identity.
func (r loadRun) unverified(st site) int64 {
	n, ok := r.verified(st)
	if !ok {
		return 0
	}
	return r.Upstream.Backend - n
}

// peakRSSMiB is Caddy's VmHWM in MiB.
func (r loadRun) peakRSSMiB() float64 { return float64(r.CaddyMemory.PeakRSSKiB) / 1024 }

// median of values; NaN when there are none.
func median(values []float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(values))
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// siteRun is one measured run of the sites scenario.
type siteRun struct {
	round int
	site  site
	run   loadRun
}

// figure is one per-run number, e.g. throughput.
type figure func(loadRun) float64

var (
	throughputFigure figure = loadRun.throughput
	caddyCPUFigure   figure = loadRun.caddyCPU
)

// ofSite returns a figure of a site's runs, in round order.
func ofSite(runs []siteRun, name string, f figure) []float64 {
	var values []float64
	for _, r := range runs {
		if r.site.name == name {
			values = append(values, f(r.run))
		}
	}
	return values
}

// ratio compares site x with site y on one figure: the ratio of their medians, and the
// ratio within each round (x and y ran next to each other, so the per-round ratios
// show the noise).
type ratio struct {
	x, y     string
	ofMedian float64
	perRound []float64
}

func newRatio(runs []siteRun, x, y string, f figure) ratio {
	xs, ys := ofSite(runs, x, f), ofSite(runs, y, f)
	r := ratio{x: x, y: y, ofMedian: median(xs) / median(ys)}
	for i := range min(len(xs), len(ys)) {
		r.perRound = append(r.perRound, xs[i]/ys[i])
	}
	return r
}
