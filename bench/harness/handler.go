package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// handlerBenchmarks are custom_auth's own Go benchmarks of ServeHTTP: a cached visitor
// (with headers, with the assertion) and a verify_jwt visitor, each next to the
// harness's own loop, to subtract.
var handlerBenchmarks = []string{"-test.run", "^$", "-test.bench", "^(BenchmarkServeHTTPWarm|BenchmarkServeHTTPJWT)$",
	"-test.benchmem", "-test.count", "3"}

// runHandler runs the handler's Go benchmarks from custom_auth's compiled tests and
// keeps their result lines.
func runHandler(ctx context.Context, cfg *config) ([]string, error) {
	progress("handler: go test -bench ServeHTTPWarm|ServeHTTPJWT, 3 counts")
	out, err := exec.CommandContext(ctx, cfg.unitTestsBin, handlerBenchmarks...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("benchmarks: %w: %.2000s", err, out)
	}
	var lines []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("benchmarks: no result: %.2000s", out)
	}
	return lines, nil
}

func (r *report) writeHandler(b *bytes.Buffer) {
	fmt.Fprintf(b, "\n## Handler: custom_auth's Go benchmarks\n\n")
	fmt.Fprintf(b, "`go test -run '^$' -bench '^(BenchmarkServeHTTPWarm|BenchmarkServeHTTPJWT)$' -benchmem -count 3 .` on the same tree: ")
	fmt.Fprintf(b, "a cached visitor (`headers`, `headers+assertion`) and a `verify_jwt` visitor (`warm`: cached; `cold`: the signature checked), ")
	fmt.Fprintf(b, "each next to the loop's own cost (`harness`), to subtract.\n\n```text\n")
	for _, line := range r.handler {
		fmt.Fprintln(b, line)
	}
	fmt.Fprintf(b, "```\n")
}
