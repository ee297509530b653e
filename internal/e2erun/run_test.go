// Package e2erun runs the tests of the workspace's other modules from the plugin's
// module, so that `go test ./...` at the repository root runs every test: the browser
// tests of ./e2e (a module of its own, so that chromedp stays out of the plugin's
// go.mod), the contact store of ./contactstore and the demo of ./demo (modules of their
// own, so that SQLite, PostgreSQL's driver and the demo's backend stay out of it too).
// It passes on -race, -short and -v.
package e2erun

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestModules(t *testing.T) {
	for _, module := range []string{"contactstore", "demo", "e2e"} {
		t.Run(module, func(t *testing.T) { testModule(t, module) })
	}
}

// testModule runs `go test ./...` in a module of the repository.
func testModule(t *testing.T, module string) {
	dir, err := filepath.Abs(filepath.Join("..", "..", module))
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
		t.Fatalf("the go command is needed to run the module %s: %v", module, err)
	}
	cmd := exec.Command(goCmd, append(args, "./...")...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("go %v in %s/:\n%s", args, module, out.String())
	if err != nil {
		t.Fatalf("the tests of %s failed: %v", module, err)
	}
}
