package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/custom-auth/custom_auth"
	"github.com/custom-auth/custom_auth/bench/fixture"
)

// The generated Caddyfiles adapt without warnings, every site on its port.
func TestCaddyfileAdapts(t *testing.T) {
	p := ports{base: 18400}
	all := benchSites(p)
	var sites []site
	for _, name := range siteOrder {
		sites = append(sites, all[string(name)])
	}
	for _, admin := range []int{0, p.admin()} {
		text := caddyfile(admin, sites...)
		adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), nil)
		if err != nil || len(warnings) > 0 {
			t.Fatalf("adapting:\n%s\nerror %v, warnings %v", text, err, warnings)
		}
		var cfg struct {
			Admin struct {
				Disabled bool   `json:"disabled"`
				Listen   string `json:"listen"`
			} `json:"admin"`
		}
		if err := json.Unmarshal(adapted, &cfg); err != nil {
			t.Fatal(err)
		}
		if admin == 0 && !cfg.Admin.Disabled || admin != 0 && cfg.Admin.Listen != fmt.Sprintf("127.0.0.1:%d", admin) {
			t.Errorf("admin %d: adapted admin = %+v", admin, cfg.Admin)
		}
		for i, st := range sites {
			if st.port != p.site(i) || !strings.Contains(string(adapted), fmt.Sprintf(`"127.0.0.1:%d"`, st.port)) {
				t.Errorf("site %s: port %d is not served", st.name, st.port)
			}
		}
	}
}

// H sets, statically, every contact header of a verified request, and removes the token.
func TestStaticContactHeaders(t *testing.T) {
	h := benchSites(ports{base: 18400})["H"]
	for name, values := range fixture.ContactHeaders(contactOfToken) {
		line := fmt.Sprintf("request_header %s `%s`", name, values[0])
		if !strings.Contains(h.body, line) {
			t.Errorf("site H lacks %q:\n%s", line, h.body)
		}
	}
	if !strings.Contains(h.body, "request_header -X-Access-Token") {
		t.Errorf("site H keeps the access token:\n%s", h.body)
	}
}

func TestSiteSettings(t *testing.T) {
	all := benchSites(ports{base: 18400})
	if len(all) != len(siteOrder) {
		t.Fatalf("%d sites, want %d", len(all), len(siteOrder))
	}
	c, d := all["C"], all["D"]
	if !c.cached || d.cached || strings.Contains(c.body, "cache_ttl") ||
		!strings.Contains(d.body, "cache_ttl 0") || !strings.Contains(d.body, "negative_ttl 0") {
		t.Errorf("C must use the default cache, D none:\nC %s\nD %s", c.body, d.body)
	}
}
