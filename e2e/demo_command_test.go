package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemoCommand checks what a person sees when starting the demo: one line with the
// pages to open and no warning about HTTP/2; and a second copy, started by mistake,
// that stops with a clear message instead of sharing the ports of the first.
func TestDemoCommand(t *testing.T) {
	demo := startExample(t, exampleOptions{})

	lines := strings.Split(strings.TrimSpace(readFile(demo.stdout)), "\n")
	if len(lines) != 1 {
		t.Errorf("the demo printed %d lines, want 1:\n%s", len(lines), readFile(demo.stdout))
	}
	for _, page := range []string{demo.pageURL("shop.localhost", ""), demo.pageURL("evil.localhost", "")} {
		if !strings.Contains(lines[0], page) {
			t.Errorf("the demo's line does not name %s: %q", page, lines[0])
		}
	}
	if output := readFile(demo.output); strings.Contains(output, "HTTP/2 skipped") || strings.Contains(output, "HTTP/3 skipped") {
		t.Errorf("Caddy warns about HTTP/2 or HTTP/3:\n%s", output)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, buildDemo(t), demo.args...)
	second.Dir = ".."
	second.Env = demo.env
	out, err := second.Output() // stdout: what a person reads
	if err == nil || ctx.Err() != nil {
		t.Fatalf("a second demo on the same ports: %v, %v, want it to stop with an error; it printed %q", err, ctx.Err(), out)
	}
	if !strings.Contains(string(out), "is in use: is the demo already running?") {
		t.Errorf("a second demo printed %q, want it to say a port is in use", out)
	}
}
