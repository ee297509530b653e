package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/custom-auth/custom_auth/bench/fixture"
)

// The nginx scenario: the tested recipe of docs/behind-nginx.md (testdata/nginx) in
// front of the same backend, asking custom_auth in answer mode (uncached, and with the
// recipe's micro-cache) or a static auth endpoint that always answers the same verified
// contact (the limit of nginx's auth_request), next to Caddy with custom_auth.

// recipeDir holds the tested nginx recipe; the harness runs from the repository root.
const recipeDir = "testdata/nginx"

// The recipe's own addresses, which the scenario replaces with its ports.
const (
	recipeListen   = "listen 127.0.0.1:8080;"
	recipeBackend  = "server 127.0.0.1:8090;"
	recipeAuth     = "server 127.0.0.1:9080;"
	recipeAuthCall = "location / {\n\t\tauth_request /_custom_auth;"
)

// nginxSiteOrder is the order of a round: nginx with custom_auth, with it cached, with
// the static endpoint, then Caddy with custom_auth (site C of the sites scenario).
const nginxSiteOrder = "NMTC"

// Caddy's sites behind nginx, and nginx's, by offset from BASE_PORT.
func (p ports) answerSite() int     { return p.base + 23 }
func (p ports) staticAuthSite() int { return p.base + 24 }
func (p ports) nginxSite(i int) int { return p.base + 20 + i }

// nginxResult is the nginx scenario's runs.
type nginxResult struct {
	sites []site
	runs  []siteRun
}

// nginxSites are the sites the scenario measures, and the Caddy sites nginx asks.
func nginxSites(p ports) (measured, auth []site) {
	answer := "custom_auth {\n\tanswer\n\tbot bench {\n\t\t" +
		fmt.Sprintf("auth_url http://127.0.0.1:%d/ca\n\t\twhitelist shop.example.com", p.api()) + "\n\t}\n}"
	var static strings.Builder
	h := fixture.ContactHeaders(contactOfToken)
	h.Set("X-Contact-Status", "verified")
	for _, name := range slices.Sorted(maps.Keys(h)) {
		fmt.Fprintf(&static, "header %s `%s`\n", name, h.Get(name))
	}
	static.WriteString("respond 200")
	auth = []site{
		{name: "answer", what: "custom_auth answer", port: p.answerSite(), kind: respondOK, body: answer},
		{name: "static", what: "static auth answer", port: p.staticAuthSite(), kind: respondOK, body: static.String()},
	}
	measured = []site{
		{name: "N", what: "nginx auth_request + custom_auth answer", port: p.nginxSite(0), kind: customAuth},
		{name: "M", what: "nginx auth_request + custom_auth answer, 1 s micro-cache", port: p.nginxSite(1), kind: customAuth, cached: true},
		{name: "T", what: "nginx auth_request + a static auth endpoint", port: p.nginxSite(2), kind: staticContact},
		benchSites(p)["C"],
	}
	return measured, auth
}

// nginxConfig is the recipe with the scenario's ports: a server asking custom_auth, one
// using the micro-cache in `location /`, one asking the static endpoint.
func nginxConfig(p ports, module string, asRoot bool) (map[string]string, error) {
	files := map[string]string{}
	for _, name := range []string{"custom_auth.conf", "custom_auth_request.conf", "custom_auth_headers.conf"} {
		data, err := os.ReadFile(filepath.Join(recipeDir, name))
		if err != nil {
			return nil, fmt.Errorf("the nginx recipe: %w", err)
		}
		files[name] = string(data)
	}
	recipe := files["custom_auth.conf"]
	at := strings.Index(recipe, "\nserver {")
	for _, part := range []string{recipeListen, recipeBackend, recipeAuth, recipeAuthCall} {
		if at < 0 || !strings.Contains(recipe, part) {
			return nil, fmt.Errorf("the nginx recipe has changed: no server block or no %q", part)
		}
	}
	httpPart, server := recipe[:at], recipe[at:]
	httpPart = strings.Replace(httpPart, recipeBackend, fmt.Sprintf("server 127.0.0.1:%d;", p.backend()), 1)
	httpPart = strings.Replace(httpPart, recipeAuth, fmt.Sprintf("server 127.0.0.1:%d;", p.answerSite()), 1)
	httpPart += fmt.Sprintf("\nupstream static_auth {\n\tserver 127.0.0.1:%d;\n\tkeepalive 64;\n}\n", p.staticAuthSite())
	listen := func(i int) string { return fmt.Sprintf("listen 127.0.0.1:%d;", p.nginxSite(i)) }
	cached := strings.Replace(server, recipeAuthCall, "location / {\n\t\tauth_request /_custom_auth_cached;", 1)
	static := strings.ReplaceAll(server, "proxy_pass http://custom_auth;", "proxy_pass http://static_auth;")
	files["custom_auth.conf"] = httpPart +
		strings.Replace(server, recipeListen, listen(0), 1) +
		strings.Replace(cached, recipeListen, listen(1), 1) +
		strings.Replace(static, recipeListen, listen(2), 1)
	user := ""
	if asRoot {
		user = "user root;\n" // the workers use the run's private work directory
	}
	files["nginx.conf"] = fmt.Sprintf(`load_module %s;
%sdaemon off;
worker_processes auto;
pid nginx.pid;
error_log logs/error.log warn;
events {
	worker_connections 4096;
}
http {
	access_log off;
	client_body_temp_path tmp/body;
	proxy_temp_path tmp/proxy;
	fastcgi_temp_path tmp/fastcgi;
	uwsgi_temp_path tmp/uwsgi;
	scgi_temp_path tmp/scgi;
	include custom_auth.conf;
}
`, module, user)
	return files, nil
}

// headersMoreModule finds Debian's libnginx-mod-http-headers-more-filter.
func headersMoreModule() (string, error) {
	for _, dir := range []string{"/usr/lib/nginx/modules", "/usr/share/nginx/modules"} {
		path := filepath.Join(dir, "ngx_http_headers_more_filter_module.so")
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", errors.New("nginx's headers-more module is missing: apt-get install nginx libnginx-mod-http-headers-more-filter")
}

// startNginx writes the scenario's nginx config to the work directory and starts nginx.
func startNginx(ctx context.Context, cfg *config, sites []site) (*process, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return nil, errors.New("nginx is missing: apt-get install nginx libnginx-mod-http-headers-more-filter")
	}
	module, err := headersMoreModule()
	if err != nil {
		return nil, err
	}
	prefix := cfg.workPath("nginx")
	for _, dir := range []string{"logs", "tmp", "cache"} {
		if err := os.MkdirAll(filepath.Join(prefix, dir), 0o700); err != nil {
			return nil, err
		}
	}
	files, err := nginxConfig(cfg.ports, module, os.Geteuid() == 0)
	if err != nil {
		return nil, err
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(prefix, name), []byte(text), 0o600); err != nil {
			return nil, err
		}
	}
	p, err := startProcess("nginx", cfg.workPath("nginx.log"), nil, bin, "-p", prefix, "-c", "nginx.conf", "-e", "logs/error.log")
	if err != nil {
		return nil, err
	}
	for _, st := range sites {
		if strings.Contains(nginxSiteOrder[:3], st.name) {
			if err := waitHTTP(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/", st.port)); err != nil {
				p.stop()
				return nil, err
			}
		}
	}
	return p, nil
}

// checkNginxSite checks that the backend gets the verified contact through an nginx
// site (with the answer's status), never the token, and no contact for a wrong token.
func (s *stack) checkNginxSite(ctx context.Context, st site) error {
	valid, err := s.probe(ctx, st, verifiedToken, nil)
	if err != nil {
		return err
	}
	if valid.status != http.StatusOK || valid.backend == nil {
		return fmt.Errorf("site %s: a valid request got status %d: %.80q", st.name, valid.status, valid.body)
	}
	got := contactHeaders(valid.backend)
	if status := got.Get("X-Contact-Status"); status != "verified" {
		return fmt.Errorf("site %s: X-Contact-Status %q", st.name, status)
	}
	delete(got, "X-Contact-Status")
	if want := fixture.ContactHeaders(contactOfToken); !equalHeaders(got, want) {
		return fmt.Errorf("site %s: the backend got contact headers %v, want %v", st.name, got, want)
	}
	if valid.backend.Get("X-Access-Token") != "" {
		return fmt.Errorf("site %s: the access token reached the backend", st.name)
	}
	if st.kind == staticContact {
		return nil
	}
	wrong, err := s.probe(ctx, st, "wrong-"+verifiedToken, http.Header{"X-Contact-Id": {"9"}})
	if err != nil {
		return err
	}
	if wrong.backend == nil || wrong.backend.Get("X-Contact-Id") != "" || wrong.backend.Get("X-Contact-Reason") != "rejected" {
		return fmt.Errorf("site %s: a wrong token with a forged X-Contact-Id: status %d, backend got %v", st.name, wrong.status, wrong.backend)
	}
	return nil
}

// runNginx checks every site, warms them up, then measures them round by round.
func runNginx(ctx context.Context, cfg *config) (*nginxResult, error) {
	p := cfg.ports
	if err := checkPortsFree(p.nginxSite(0), p.nginxSite(1), p.nginxSite(2), p.answerSite(), p.staticAuthSite()); err != nil {
		return nil, err
	}
	measured, auth := nginxSites(p)
	res := &nginxResult{sites: measured}
	caddySites := append(slices.Clone(auth), measured[3])
	s, err := startStack(ctx, cfg, "nginx", stackOptions{}, caddySites...)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	ngx, err := startNginx(ctx, cfg, measured)
	if err != nil {
		return nil, err
	}
	defer ngx.stop()

	check := func() error {
		for _, st := range measured {
			if st.name == "C" {
				err = s.checkSite(ctx, st)
			} else {
				err = s.checkNginxSite(ctx, st)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	progress("nginx: checking every site")
	if err := check(); err != nil {
		return nil, fmt.Errorf("%w\nnginx: %s", err, ngx.logTail(10))
	}
	progress("nginx: warming up, %s per site", cfg.warmup)
	for _, st := range measured {
		if _, err := s.measure(ctx, st, cfg.warmup, cfg.conns, tokens{fixed: verifiedToken}); err != nil {
			return nil, err
		}
	}
	for round := 1; round <= cfg.rounds; round++ {
		for _, st := range measured {
			run, err := s.measure(ctx, st, cfg.duration, cfg.conns, tokens{fixed: verifiedToken})
			if err != nil {
				return nil, err
			}
			if err := checkLoadRun(st, run, cfg.conns); err != nil {
				return nil, fmt.Errorf("round %d: %w", round, err)
			}
			res.runs = append(res.runs, siteRun{round: round, site: st, run: run})
			progress("nginx: round %d site %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d",
				round, st.name, run.throughput(), ms(run.Wrk.P50), ms(run.Wrk.P99), run.errors())
		}
	}
	if err := check(); err != nil {
		return nil, fmt.Errorf("after the last round: %w", err)
	}
	return res, nil
}

// nginxRatios are the nginx scenario's ratios, with the product's target.
var nginxRatios = []ratioTarget{
	{"N", "T", 0.9, "nginx asking custom_auth over nginx asking an endpoint that does nothing"},
	{"M", "T", 0, "the same with the 1 s micro-cache"},
	{"N", "C", 0, "nginx + custom_auth answer over Caddy + custom_auth"},
	{"M", "C", 0, "the same with the micro-cache"},
}

// writeNginx is the nginx scenario's section of the report.
func (r *report) writeNginx(b *bytes.Buffer) {
	res, c := r.nginx, r.cfg
	fmt.Fprintf(b, "\n## Behind nginx\n\n")
	fmt.Fprintf(b, "The tested recipe of docs/behind-nginx.md (nginx %s, `worker_processes auto`), `wrk -t%d -c%d -d%s` per run, the same access token on every request; rounds %s interleaved, %d round(s). CPU is not split per process here: nginx's is in the machine's load.\n\n",
		nginxVersion(), c.threads, c.conns, seconds(c.duration), strings.Join(strings.Split(nginxSiteOrder, ""), " "), c.rounds)
	t := newTable("site", "what", "req/s>", "p50 ms>", "p99 ms>", "API calls/req>", "errors (all runs)>")
	for _, st := range res.sites {
		var errs int64
		for _, sr := range res.runs {
			if sr.site.name == st.name {
				errs += sr.run.errors()
			}
		}
		med := func(f figure) float64 { return median(ofSite(res.runs, st.name, f)) }
		t.add(st.name, st.what, f0(med(throughputFigure)),
			f2(med(func(r loadRun) float64 { return ms(r.Wrk.P50) })),
			f2(med(func(r loadRun) float64 { return ms(r.Wrk.P99) })),
			f2(med(loadRun.apiCallsPerRequest)), fmt.Sprint(errs))
	}
	b.WriteString(t.String())
	t = newTable("ratio", "throughput (medians)>", "throughput per round", "target", "what it tells")
	for _, rt := range nginxRatios {
		tp := newRatio(res.runs, rt.x, rt.y, throughputFigure)
		t.add(rt.x+"/"+rt.y, f3(tp.ofMedian), joinFloats(tp.perRound, f3), rt.verdict(tp.ofMedian), rt.means)
	}
	b.WriteString("\n" + t.String())
}

// nginxVersion is what `nginx -v` says, e.g. nginx/1.22.1.
func nginxVersion() string {
	out, _ := exec.Command("nginx", "-v").CombinedOutput()
	_, version, _ := strings.Cut(strings.TrimSpace(string(out)), "version: ")
	return version
}
