package main

import (
	"slices"
	"strings"
	"testing"
)

func TestSummariseModuleLog(t *testing.T) {
	log := `{"level":"info","ts":1,"logger":"http","msg":"server running"}
gc 1 @0.1s 1%: 0.1+1+0.01 ms clock, 0.2+0/1/0+0.02 ms cpu, 4->4->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P
{"level":"warn","ts":2,"logger":"http.handlers.custom_auth","msg":"identity API unreachable","bot":"bench","error":"timeout"}
{"level":"warn","ts":3,"logger":"http.handlers.custom_auth","msg":"identity API unreachable","bot":"bench","error":"timeout"}
{"level":"warn","ts":4,"logger":"http.handlers.custom_auth","msg":"circuit breaker open","bot":"bench"}
{"level":"warn","ts":5,"logger":"http.handlers.custom_auth","msg":"truncated
`
	got := summariseModuleLog(strings.NewReader(log))
	want := []string{"circuit breaker open (1x)", "identity API unreachable: timeout (2x)"}
	if !slices.Equal(got, want) {
		t.Errorf("summariseModuleLog = %q, want %q", got, want)
	}
}
