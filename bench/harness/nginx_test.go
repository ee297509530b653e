package main

import (
	"strings"
	"testing"
)

// TestNginxConfig: the scenario's nginx config is the recipe with its ports: three
// servers, the second using the micro-cache in `location /`, the third asking the
// static endpoint; the recipe's own addresses are all gone.
func TestNginxConfig(t *testing.T) {
	t.Chdir("../..") // the harness runs from the repository root
	p := ports{base: 18400}
	files, err := nginxConfig(p, "/m.so", true)
	if err != nil {
		t.Fatal(err)
	}
	conf := files["custom_auth.conf"]
	for _, want := range []string{
		"listen 127.0.0.1:18420;", "listen 127.0.0.1:18421;", "listen 127.0.0.1:18422;",
		"server 127.0.0.1:18400;", "server 127.0.0.1:18423;", "server 127.0.0.1:18424;",
		"location / {\n\t\tauth_request /_custom_auth_cached;",
		"proxy_pass http://static_auth;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("the config has no %q", want)
		}
	}
	for _, gone := range []string{recipeListen, recipeBackend, recipeAuth} {
		if strings.Contains(conf, gone) {
			t.Errorf("the config still has %q", gone)
		}
	}
	if n := strings.Count(conf, "\nserver {"); n != 3 {
		t.Errorf("%d servers, want 3", n)
	}
	if !strings.Contains(files["nginx.conf"], "load_module /m.so;\nuser root;") {
		t.Errorf("nginx.conf:\n%s", files["nginx.conf"])
	}
}
