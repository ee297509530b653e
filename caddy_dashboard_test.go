package customauth

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// promName is a metric or recorded series name in a PromQL expression.
var promName = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// TestIntegrationDashboardMetrics keeps the Grafana dashboard on real series: every
// custom_auth metric its queries read is in a scrape of a real gateway that has served
// requests, and every recorded series it reads is one the Prometheus rules record.
func TestIntegrationDashboardMetrics(t *testing.T) {
	api := newIdentityAPI(t)
	tester := startAdminCaddy(t, api, 1)
	for range 2 { // a miss that calls the identity API, then a hit
		tester.AssertResponse(gatewayRequest("/chat", "alice-token", "https://shop.example.com"), http.StatusOK, "ok")
	}
	code, scrape := adminRequest(t, tester, http.MethodGet, "http://localhost:2999/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	scraped := map[string]bool{}
	for line := range strings.SplitSeq(scrape, "\n") {
		if name := promName.FindString(line); name != "" && !strings.HasPrefix(line, "#") {
			scraped[name] = true
		}
	}
	rules := readDoc(t, "deploy/prometheus/custom_auth.rules.yml")
	recorded := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*- record: (\S+)$`).FindAllStringSubmatch(rules, -1) {
		recorded[m[1]] = true
	}

	queries := dashboardQueries(t, "deploy/grafana/custom_auth.json")
	checked := 0
	for _, query := range queries {
		for _, name := range promName.FindAllString(query, -1) {
			if !strings.Contains(name, "caddy_custom_auth_") {
				continue
			}
			checked++
			if strings.Contains(name, ":") && !recorded[name] {
				t.Errorf("the dashboard reads %s, which no rule records", name)
			}
			if !strings.Contains(name, ":") && !scraped[name] {
				t.Errorf("the dashboard reads %s, which a scrape of the gateway does not have", name)
			}
		}
	}
	if checked < len(queries) {
		t.Errorf("%d names in %d queries: every query should read a custom_auth series", checked, len(queries))
	}
}

// dashboardQueries returns the PromQL of a Grafana dashboard: its panels' targets and
// its template variables' queries.
func dashboardQueries(t *testing.T, file string) []string {
	t.Helper()
	var dashboard struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dashboard); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var queries []string
	for _, panel := range dashboard.Panels {
		for _, target := range panel.Targets {
			queries = append(queries, target.Expr)
		}
	}
	for _, variable := range dashboard.Templating.List {
		if variable.Definition != "" {
			queries = append(queries, variable.Definition)
		}
	}
	if len(queries) == 0 {
		t.Fatalf("%s has no queries", file)
	}
	return queries
}
