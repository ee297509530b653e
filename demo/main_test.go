package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunSaysItBuilds checks that the launcher says it is building before the build,
// which takes minutes the first time, and says so when the build fails (here a `go`
// that fails at once).
func TestRunSaysItBuilds(t *testing.T) {
	bin := t.TempDir()
	fakeGo := "#!/bin/sh\necho 'compile error' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())

	var stdout, stderr bytes.Buffer
	status := run(&stdout, &stderr, nil)
	if status != 1 {
		t.Errorf("exit status %d, want 1", status)
	}
	if !strings.HasPrefix(stdout.String(), "building the demo (the first time takes a few minutes)") {
		t.Errorf("stdout %q, want it to start by saying it builds", stdout.String())
	}
	if !strings.Contains(stderr.String(), "compile error") || !strings.Contains(stderr.String(), "building it failed") {
		t.Errorf("stderr %q, want the build's error and that building failed", stderr.String())
	}
}
