// Command demo starts the custom_auth demo: from the repository's root,
//
//	go run ./demo
//
// It is small, so that it compiles in seconds and can say what happens next: it builds
// the demo itself (./demo/server: Caddy with custom_auth and the chat backend, which
// takes minutes the first time), then runs it with Caddy's logs in a file, so that the
// terminal shows one line with the pages to open. Arguments are passed on to the demo
// (-config, -db, -backend).
package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
)

func main() {
	os.Exit(run(os.Stdout, os.Stderr, os.Args[1:]))
}

// run builds the demo and runs it with args, and returns the exit status.
func run(stdout, stderr io.Writer, args []string) int {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "custom_auth-demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintln(stderr, "custom_auth demo:", err)
		return 1
	}
	exe := filepath.Join(dir, "demo-server")
	fmt.Fprintln(stdout, "building the demo (the first time takes a few minutes)…")
	build := exec.Command("go", "build", "-o", exe, "github.com/custom-auth/custom_auth/demo/server")
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(stderr, "custom_auth demo: building it failed:", err)
		return 1
	}

	logFile := filepath.Join(dir, "caddy.log")
	logs, err := os.Create(logFile)
	if err != nil {
		fmt.Fprintln(stderr, "custom_auth demo:", err)
		return 1
	}
	defer logs.Close()
	args = append([]string{"-db", filepath.Join(dir, "contacts.db"), "-logs", logFile}, args...)
	demo := exec.Command(exe, args...)
	demo.Stdin, demo.Stdout, demo.Stderr = os.Stdin, stdout, logs
	// Ctrl-C reaches the demo too, which stops; this waits for it.
	signal.Ignore(os.Interrupt)
	if err := demo.Run(); err != nil {
		fmt.Fprintf(stderr, "custom_auth demo stopped (%v); Caddy's logs: %s\n", err, logFile)
		return 1
	}
	return 0
}
