package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseWrkSummary(t *testing.T) {
	out := `Running 3s test @ http://127.0.0.1:18412/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
BENCH requests=17583 duration_us=3002520 p50_us=9880 p99_us=41648 non2xx=2 socket_errors=1 sent=17600
`
	got, err := parseWrkSummary([]byte(out))
	want := wrkResult{
		Requests: 17583, Duration: 3002520 * time.Microsecond, P50: 9880 * time.Microsecond,
		P99: 41648 * time.Microsecond, Non2xx: 2, SocketErrors: 1, Sent: 17600,
	}
	if err != nil || got != want {
		t.Errorf("parseWrkSummary = %+v, %v; want %+v", got, err, want)
	}
	for name, bad := range map[string]string{
		"no summary":   "Running 3s test\n",
		"missing key":  "BENCH requests=1 duration_us=1 p50_us=1 p99_us=1 non2xx=0 socket_errors=0\n",
		"not a number": "BENCH requests=x duration_us=1 p50_us=1 p99_us=1 non2xx=0 socket_errors=0 sent=0\n",
		"no requests":  "BENCH requests=0 duration_us=1 p50_us=0 p99_us=0 non2xx=0 socket_errors=5 sent=0\n",
	} {
		if _, err := parseWrkSummary([]byte(bad)); err == nil {
			t.Errorf("%s: parseWrkSummary did not fail", name)
		}
	}
}

func TestWrkArgs(t *testing.T) {
	l := load{url: "http://127.0.0.1:1/", threads: 2, conns: 64, duration: 3 * time.Second, scriptPath: "/w/widget.lua"}
	l.tokens = tokens{fixed: "bench-2"}
	want := "-t2 -c64 -d3s -s /w/widget.lua http://127.0.0.1:1/ -- fixed bench-2"
	if got := strings.Join(l.args(), " "); got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
	l.tokens = tokens{}
	if got := l.args(); !slices.Equal(got[len(got)-2:], []string{"--", "fresh"}) {
		t.Errorf("args with a new token per request = %q", got)
	}
}

// The script reads the arguments the harness passes.
func TestWidgetScriptModes(t *testing.T) {
	script := string(widgetScript)
	for _, s := range []string{`mode == "fixed"`, `mode ~= "fresh"`, "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d sent=%d"} {
		if !strings.Contains(script, s) {
			t.Errorf("widget.lua has no %q", s)
		}
	}
}
