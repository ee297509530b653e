package customauth

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrometheusRules checks the alert and recording rules of deploy/prometheus with
// promtool, as an operator's Prometheus would load them, and runs their unit tests.
func TestPrometheusRules(t *testing.T) {
	promtool := lookPathOrSkip(t, "promtool", "prometheus")
	rules, _ := filepath.Glob("deploy/prometheus/*.rules.yml")
	tests, _ := filepath.Glob("deploy/prometheus/*.rules.test.yml")
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("deploy/prometheus has rules %v and rule tests %v; want both", rules, tests)
	}
	for _, args := range [][]string{
		append([]string{"check", "rules"}, rules...),
		append([]string{"test", "rules"}, tests...),
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// lookPathOrSkip finds a tool on PATH. Without it the test is skipped, except under
// CI, which installs it from the Debian package pkg: there the test fails.
func lookPathOrSkip(t testing.TB, tool, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (apt-get install %s): %v", tool, pkg, err)
		}
		t.Skipf("%s is not installed (apt-get install %s); skipping: %v", tool, pkg, err)
	}
	return path
}
