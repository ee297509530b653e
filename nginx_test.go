package customauth

// The harness of the tests through a real nginx (testdata/nginx, the recipe that
// docs/behind-nginx.md shows): nginx started on loopback with the recipe, in front of
// a recording backend, asking a real Caddy running testdata/nginx/Caddyfile.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The recipe's addresses: nginx listens where browsers come, custom_auth on loopback
// where nginx asks it, and the test replaces the backend's address with its own.
const (
	nginxAddr          = "127.0.0.1:8080"
	nginxVariantAddr   = "127.0.0.1:8081" // the recipe with underscores and dots let through
	recipeBackendAddr  = "127.0.0.1:8090"
	recipeTestdata     = "testdata/nginx"
	headersMoreModule  = "ngx_http_headers_more_filter_module.so"
	nginxStartDeadline = 10 * time.Second
)

// headersMoreModulePaths are where Debian's libnginx-mod-http-headers-more-filter
// puts the module.
var headersMoreModulePaths = []string{"/usr/lib/nginx/modules", "/usr/share/nginx/modules"}

// requireNginx finds nginx and the headers-more module. Without them the test is
// skipped, except under CI, which installs them: there the test fails.
func requireNginx(t testing.TB) (bin, module string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err == nil {
		module, err = findHeadersMore()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nginx with headers-more is not installed (apt-get install nginx libnginx-mod-http-headers-more-filter): %v", err)
		}
		t.Skipf("nginx with headers-more is not installed (apt-get install nginx libnginx-mod-http-headers-more-filter); skipping: %v", err)
	}
	return bin, module
}

// findHeadersMore returns the path of the headers-more module: in a modules
// directory, or named by the load_module line Debian puts in modules-available.
func findHeadersMore() (string, error) {
	for _, dir := range headersMoreModulePaths {
		if path := filepath.Join(dir, headersMoreModule); fileExists(path) {
			return path, nil
		}
	}
	confs, _ := filepath.Glob("/usr/share/nginx/modules-available/*headers-more*.conf")
	for _, conf := range confs {
		data, err := os.ReadFile(conf)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			if path, ok := strings.CutPrefix(strings.TrimSpace(line), "load_module "); ok {
				path = strings.TrimSuffix(path, ";")
				if !filepath.IsAbs(path) {
					path = filepath.Join("/usr/share/nginx", path)
				}
				if fileExists(path) {
					return path, nil
				}
			}
		}
	}
	return "", errors.New(headersMoreModule + " not found")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// nginxMainConf is the test's own nginx.conf around the recipe: in the foreground,
// its files in the prefix directory, one process (so it runs as the test's user).
const nginxMainConf = `load_module %s;
daemon off;
master_process off;
pid nginx.pid;
error_log logs/error.log warn;
events {
	worker_connections 1024;
}
http {
	access_log off;
	client_body_temp_path tmp/body;
	proxy_temp_path tmp/proxy;
	fastcgi_temp_path tmp/fastcgi;
	uwsgi_temp_path tmp/uwsgi;
	scgi_temp_path tmp/scgi;
	include custom_auth.conf;
	include custom_auth_variant.conf;
}
`

// startNginx runs nginx with the recipe in front of backend, and stops it with the
// test. A second server, on nginxVariantAddr, is the recipe with nginx's defaults
// for header names turned off: underscores and dots let through.
func startNginx(t *testing.T, backendURL string) {
	t.Helper()
	bin, module := requireNginx(t)
	prefix := t.TempDir()
	for _, dir := range []string{"logs", "tmp", "cache"} {
		if err := os.MkdirAll(filepath.Join(prefix, dir), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	backend := strings.TrimPrefix(backendURL, "http://")
	files := map[string]string{"nginx.conf": fmt.Sprintf(nginxMainConf, module)}
	for _, name := range []string{"custom_auth.conf", "custom_auth_request.conf", "custom_auth_headers.conf"} {
		files[name] = strings.ReplaceAll(recipeFile(t, name), recipeBackendAddr, backend)
	}
	files["custom_auth_variant.conf"] = recipeVariant(t, files["custom_auth.conf"])
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(prefix, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", "nginx.conf", "-e", "logs/error.log")
	out := new(strings.Builder)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(prefix, "logs", "error.log"))
			t.Logf("nginx error log:\n%s", log)
		}
	})
	deadline := time.Now().Add(nginxStartDeadline)
	for {
		conn, err := net.Dial("tcp", nginxAddr)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(prefix, "logs", "error.log"))
			t.Fatalf("nginx exited: %v\n%s%s", err, out, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %v", nginxAddr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func recipeFile(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(recipeTestdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// recipeVariant is the recipe's server with nginx's header-name defaults turned off
// (`underscores_in_headers on`, `ignore_invalid_headers off`), for the tests that show
// the clearing patterns cover the names nginx then lets through.
func recipeVariant(t testing.TB, recipe string) string {
	t.Helper()
	at := strings.Index(recipe, "\nserver {")
	if at < 0 {
		t.Fatal("the recipe has no server block")
	}
	server := recipe[at:]
	listen := "listen " + nginxAddr + ";"
	if !strings.Contains(server, listen) {
		t.Fatalf("the recipe's server does not %s", listen)
	}
	return strings.Replace(server, listen, "listen "+nginxVariantAddr+";\n\tunderscores_in_headers on;\n\tignore_invalid_headers off;", 1)
}

// TestBehindNginxDocShowsTheRecipe: docs/behind-nginx.md shows each file of the tested
// recipe whole, as it is.
func TestBehindNginxDocShowsTheRecipe(t *testing.T) {
	doc, err := os.ReadFile("docs/behind-nginx.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, fence := range map[string]string{
		"Caddyfile":                "caddyfile",
		"custom_auth.conf":         "nginx",
		"custom_auth_request.conf": "nginx",
		"custom_auth_headers.conf": "nginx",
	} {
		if block := "```" + fence + "\n" + recipeFile(t, name) + "```\n"; !strings.Contains(string(doc), block) {
			t.Errorf("docs/behind-nginx.md does not show %s as it is", name)
		}
	}
}
