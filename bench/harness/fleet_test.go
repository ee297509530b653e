package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 10; i++ {
		d = append(d, time.Duration(11-i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 5 * time.Millisecond}, {90, 9 * time.Millisecond}, {100, 10 * time.Millisecond}, {0, time.Millisecond}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("p%.0f = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing")
	}
}

func TestFleetSites(t *testing.T) {
	p := ports{base: 18400}
	a, b, c := fleetSites(p, "")
	if strings.Contains(a.body, "shared_cache") || a.port == b.port || b.port == c.port || a.body != b.body || b.body != c.body {
		t.Errorf("alone: %+v %+v %+v", a, b, c)
	}
	a, _, _ = fleetSites(p, "redis://127.0.0.1:18404")
	if !strings.Contains(a.body, "shared_cache redis://127.0.0.1:18404 {\n\t\ttimeout 50ms\n\t}") {
		t.Errorf("shared:\n%s", a.body)
	}
}

func TestFleetReport(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	r := &report{cfg: &config{apiLatency: 50 * time.Millisecond}, fleet: &fleetResult{visitors: 2, redisVersion: "Redis server v=7.0.15", runs: []fleetRun{
		{apiCalls: 6, first: ms(50, 52), other: ms(51, 53), repeat: ms(1, 1)},
		{shared: sharedOneNode, apiCalls: 2, first: ms(51, 53), other: ms(2, 3), repeat: ms(1, 1)},
		{shared: sharedCluster, apiCalls: 2, first: ms(52, 55), other: ms(3, 4), repeat: ms(1, 1)},
	}}}
	var b bytes.Buffer
	r.writeFleet(&b)
	for _, want := range []string{
		"| alone | 3.00 | 50.00 | 52.00 | 51.00 | 53.00 | 1.00 |",
		"| shared_cache, one node | 1.00 | 51.00 | 53.00 | 2.00 | 3.00 | 1.00 |",
		"| shared_cache, 3-shard cluster | 1.00 | 52.00 | 55.00 | 3.00 | 4.00 | 1.00 |",
		"shared_cache, one node: a visitor costs the identity API 1.00 calls on three gateways (alone: 3.00)",
		"adds 1.00 ms at p50 and 1.00 ms at p99",
		"adds 2.00 ms at p50 and 3.00 ms at p99",
		"takes 2.00 ms at p50 from the shared cache, instead of 51.00 ms",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, b.String())
		}
	}
}
