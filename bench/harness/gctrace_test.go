package main

import "testing"

func TestParseGCTrace(t *testing.T) {
	stderr := `{"level":"info","ts":1,"msg":"serving initial configuration"}
gc 41 @10.5s 5%: 0.10+2.0+0.02 ms clock, 0.20+0.5/1.9/0+0.04 ms cpu, 90->95->48 MB, 97 MB goal, 0 MB stacks, 0 MB globals, 2 P
gc 42 @11.0s 6%: 0.10+2.1+0.02 ms clock, 0.20+0.5/1.9/0+0.04 ms cpu, 96->101->61 MB, 98 MB goal, 1 MB stacks, 0 MB globals, 2 P
{"level":"warn","logger":"http.handlers.custom_auth","msg":"x"}
gc 43 @11.6s 7%: 0.10+2.2+0.02 ms clock, 0.20+0.5/1.9/0+0.04 ms cpu, 118->120->57 MB, 123 MB goal, 1 MB stacks, 0 MB globals, 2 P (forced)
`
	got, err := parseGCTrace([]byte(stderr))
	want := gcSummary{Cycles: 3, LastLiveMB: 57, MaxLiveMB: 61, MaxGoalMB: 123, CPUPercent: 7, CPUMillis: 3 * 2.64}
	if got.CPUMillis-want.CPUMillis < 1e-9 && want.CPUMillis-got.CPUMillis < 1e-9 {
		got.CPUMillis = want.CPUMillis
	}
	if err != nil || got != want {
		t.Errorf("parseGCTrace = %+v, %v; want %+v", got, err, want)
	}
	if got, err := parseGCTrace([]byte("no gc here\n")); err != nil || got != (gcSummary{}) {
		t.Errorf("parseGCTrace without gctrace = %+v, %v", got, err)
	}
}

func TestParseHeapAlloc(t *testing.T) {
	profile := `heap profile: 3: 1024 [10: 4096] @ heap/1048576
1: 512 [1: 512] @ 0x1 0x2
#	0x1	main.f+0x1	/x.go:1

# runtime.MemStats
# Alloc = 7340032
# TotalAlloc = 99999999
# Sys = 20000000
# HeapAlloc = 7241234
# HeapSys = 12000000
`
	got, err := parseHeapAlloc([]byte(profile))
	if err != nil || got != 7241234 {
		t.Errorf("parseHeapAlloc = %d, %v; want 7241234", got, err)
	}
	if _, err := parseHeapAlloc([]byte("heap profile: 0: 0 [0: 0] @ heap/1\n")); err == nil {
		t.Error("a profile without MemStats passed")
	}
}
