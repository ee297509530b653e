package customauth

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
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

// ruleMetric is a metric an expression reads: not a recorded series (level:name:op).
var ruleMetric = regexp.MustCompile(`(^|[^:a-z_])(caddy_custom_auth_[a-z_]+)`)

// TestPrometheusRulesQueryModuleMetrics keeps the rules on the module's metric names:
// every caddy_custom_auth_ metric an expression reads is one the module registers (a
// histogram's _bucket, _count and _sum included).
func TestPrometheusRulesQueryModuleMetrics(t *testing.T) {
	registered := map[string]bool{}
	descs := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range newProcessMetrics().collectors() {
			c.Describe(descs)
		}
		close(descs)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for desc := range descs {
		name := fqName.FindStringSubmatch(desc.String())[1]
		for _, suffix := range []string{"", "_bucket", "_count", "_sum"} {
			registered[name+suffix] = true
		}
	}
	rules, err := os.ReadFile("deploy/prometheus/custom_auth.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	queried := 0
	for _, m := range ruleMetric.FindAllStringSubmatch(string(rules), -1) {
		name := m[2]
		queried++
		if !registered[name] {
			t.Errorf("the rules query %s, which custom_auth does not register", name)
		}
	}
	if queried == 0 {
		t.Fatal("the rules query no caddy_custom_auth_ metric")
	}
}
