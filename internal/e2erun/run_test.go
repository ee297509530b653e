// Package e2erun runs the browser tests of ./e2e, a Go module of its own (so that
// chromedp and its dependencies stay out of the plugin's go.mod), from the plugin's
// module: `go test ./...` at the repository root then runs every test, the browser ones
// included. It passes on -race, -short and -v.
package e2erun

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestBrowserModule(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"test", "-count=1", "-timeout=20m"}
	if raceEnabled {
		args = append(args, "-race")
	}
	if testing.Short() {
		args = append(args, "-short")
	}
	if testing.Verbose() {
		args = append(args, "-v")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to run the browser module: %v", err)
	}
	cmd := exec.Command(goCmd, append(args, "./...")...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("go %v in e2e/:\n%s", args, out.String())
	if err != nil {
		t.Fatalf("the browser tests failed: %v", err)
	}
}
