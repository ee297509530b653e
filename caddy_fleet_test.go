package customauth

// Integration tests of a fleet: two real Caddy processes (the binary of ./caddymodule)
// behind no load balancer but the test, sharing one real redis-server. They bind free
// loopback ports, so they never collide with caddytest's fixed ones.

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gateway is a Caddy process of the fleet.
type gateway struct {
	name      string
	httpAddr  string
	adminAddr string

	mu  sync.Mutex
	log strings.Builder // everything it logged
}

// startGateway runs the Caddy binary with a custom_auth handler whose inside is
// handlerBody, answering each request with its outcome and contact id; it returns
// once Caddy serves the config.
func startGateway(t *testing.T, name, handlerBody string) *gateway {
	t.Helper()
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{
		name:      name,
		httpAddr:  "127.0.0.1:" + strconv.Itoa(freePort(t)),
		adminAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "Caddyfile")
	os.WriteFile(config, []byte(fmt.Sprintf(`{
	admin %s
	skip_install_trust
	persist_config off
}
http://%s {
	bind 127.0.0.1
	custom_auth {
		%s
	}
	respond "{http.custom_auth.status}/{http.custom_auth.reason}/{http.custom_auth.contact.id}"
}
`, g.adminAddr, g.httpAddr, handlerBody)), 0o600)
	runGateway(t, g, bin, config, nil)
	return g
}

// runGateway runs the Caddy binary with a config and more environment, and returns
// once Caddy serves the config.
func runGateway(t *testing.T, g *gateway, bin, config string, env []string) {
	t.Helper()
	dir := t.TempDir()
	name := g.name
	cmd := exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile")
	cmd.Env = append(append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	serving := make(chan bool, 1)
	go func() {
		scanner := bufio.NewScanner(stderr)
		scanner.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for scanner.Scan() {
			g.mu.Lock()
			g.log.WriteString(scanner.Text() + "\n")
			g.mu.Unlock()
			if !signalled && strings.Contains(scanner.Text(), "serving initial configuration") {
				serving <- true
				signalled = true
			}
		}
		if !signalled {
			serving <- false
		}
	}()
	select {
	case ok := <-serving:
		if !ok {
			t.Fatalf("gateway %s exited:\n%s", name, g.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("gateway %s: not serving within 30s:\n%s", name, g.logs())
	}
}

func (g *gateway) logs() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

var fleetClient = &http.Client{Timeout: 10 * time.Second}

// visit sends a widget request for bot shop and returns the outcome
// (status/reason/contact id) and how long the gateway took.
func (g *gateway) visit(t *testing.T, token string) (string, time.Duration) {
	t.Helper()
	return g.visitBot(t, "shop", token)
}

// visitBot is visit for another bot id.
func (g *gateway) visitBot(t *testing.T, bot, token string) (string, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+g.httpAddr+"/chat", strings.NewReader("hi"))
	req.Header.Set("X-Bot-Id", bot)
	req.Header.Set("X-Access-Token", token)
	start := time.Now()
	resp, err := fleetClient.Do(req)
	if err != nil {
		t.Fatalf("gateway %s: %v", g.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body), time.Since(start)
}

// mustVerify sends a request that must be verified as contact 2.
func (g *gateway) mustVerify(t *testing.T, token string) time.Duration {
	t.Helper()
	got, took := g.visit(t, token)
	if got != "verified//2" {
		t.Fatalf("gateway %s, %s: outcome %q, want verified//2", g.name, token, got)
	}
	return took
}

// purge posts a purge to the gateway's admin API.
func (g *gateway) purge(t *testing.T, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+g.adminAddr+"/custom-auth/purge", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := fleetClient.Do(req)
	if err != nil {
		t.Fatalf("purge on %s: %v", g.name, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// startFleet runs two gateways sharing the Redis server, whose identity API is api.
func startFleet(t *testing.T, r *redisServer, api *identityAPI, timeout time.Duration) (*gateway, *gateway) {
	body := fmt.Sprintf(`shared_cache %s {
			timeout %s
		}
		bot shop {
			auth_url %s
		}`, r.url(""), timeout, api.URL)
	return startGateway(t, "A", body), startGateway(t, "B", body)
}

func TestFleetSharesVerdicts(t *testing.T) {
	r := startRedis(t)
	api := sameContactAPI(t)
	a, b := startFleet(t, r, api, time.Second)

	a.mustVerify(t, "alice-token")
	b.mustVerify(t, "alice-token")
	a.mustVerify(t, "alice-token")
	if n := api.calls.Load(); n != 1 {
		t.Errorf("%d API calls for one visitor on two gateways, want 1", n)
	}
	for _, g := range []*gateway{b, a} {
		if got, _ := g.visit(t, "wrong-token"); !strings.HasPrefix(got, "fallback/rejected/") {
			t.Errorf("gateway %s: outcome %q", g.name, got)
		}
	}
	if n := api.calls.Load(); n != 2 {
		t.Errorf("%d API calls after a rejection on both gateways, want 2", n)
	}
}

// TestFleetPurge purges on one gateway, through the admin API and the CLI, and the
// next request on the other gateway calls the identity API again.
func TestFleetPurge(t *testing.T) {
	r := startRedis(t)
	api := sameContactAPI(t)
	a, b := startFleet(t, r, api, time.Second)
	tokens := []string{"alice-token", "alice-phone-token", "alice-tablet-token"}
	calls := func(want int64, why string) {
		t.Helper()
		if n := api.calls.Load(); n != want {
			t.Errorf("%d API calls, want %d: %s", n, want, why)
		}
	}
	verifyAll := func() {
		t.Helper()
		for _, token := range tokens {
			a.mustVerify(t, token)
			b.mustVerify(t, token)
		}
	}
	verifyAll()
	calls(3, "three visitors verified on two gateways")

	code, answer := a.purge(t, `{"bot": "shop", "token": "alice-token"}`)
	if code != http.StatusOK || answer != `{"purged":1,"gateways":2}`+"\n" {
		t.Fatalf("purge by token: %d %s", code, answer)
	}
	b.mustVerify(t, "alice-phone-token")
	calls(3, "another token of the contact stays cached")
	b.mustVerify(t, "alice-token")
	calls(4, "the purged token is asked about again on the other gateway")
	a.mustVerify(t, "alice-token")
	calls(4, "the verdict reached since the purge is shared")

	// By contact, from the command line, on the other gateway.
	exit, out := runCaddy(t, "custom-auth", "purge", "--address", b.adminAddr, "--bot", "shop", "--contact", "2")
	if exit != 0 || !strings.Contains(out, "2 gateways of the fleet confirmed") {
		t.Fatalf("purge --contact: exit %d:\n%s", exit, out)
	}
	for i, token := range tokens {
		a.mustVerify(t, token)
		calls(int64(5+i), "every token of the purged contact is asked about again")
	}
	verifyAll()
	calls(7, "the verdicts reached since are shared")

	code, answer = b.purge(t, `{"bot": "shop"}`)
	if code != http.StatusOK || answer != `{"purged":0,"gateways":2}`+"\n" {
		t.Fatalf("purge by bot: %d %s", code, answer)
	}
	a.mustVerify(t, "alice-tablet-token")
	calls(8, "the purged bot's visitors are asked about again")

	if code, answer := a.purge(t, `{"token": "alice-token"}`); code != http.StatusBadRequest || !strings.Contains(answer, `\"bot\" is required`) {
		t.Errorf("purge without a bot: %d %s", code, answer)
	}
}

func TestFleetPurgeCLIExitCodes(t *testing.T) {
	api := newIdentityAPI(t)
	g := startGateway(t, "solo", fmt.Sprintf("bot shop {\n\t\t\tauth_url %s\n\t\t}", api.URL))
	g.mustVerify(t, "alice-token")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--address", g.adminAddr, "--bot", "shop", "--token", "alice-token"}, 0, "1 removed here"},
		{[]string{"--address", g.adminAddr, "--token", "alice-token"}, 2, "--bot is required"},
		{[]string{"--address", g.adminAddr, "--bot", "shop", "--token", "t", "--contact", "2"}, 2, "not both"},
		{[]string{"--address", g.adminAddr, "--bot", "shop", "--token", ""}, 2, "--token is empty"},
		{[]string{"--address", g.adminAddr, "--bot", "shop", "--no-such-flag"}, 2, "unknown flag"},
		{[]string{"--address", "127.0.0.1:" + strconv.Itoa(freePort(t)), "--bot", "shop"}, 1, "connection refused"},
	} {
		code, out := runCaddy(t, append([]string{"custom-auth", "purge"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want %d; output lacks %q:\n%s", tc.args, code, tc.code, tc.want, out)
		}
		if strings.Contains(out, "alice-token") {
			t.Errorf("%v: the token is printed:\n%s", tc.args, out)
		}
	}
	g.mustVerify(t, "alice-token")
	if n := api.calls.Load(); n != 2 {
		t.Errorf("%d API calls, want 2: the CLI's purge did not reach the gateway", n)
	}
}

// TestFleetRedisDown: with the shared cache hanging, then gone, both gateways keep
// verifying visitors from their local caches or the API, each request within the
// timeout plus the API's time, and the password is never logged.
func TestFleetRedisDown(t *testing.T) {
	const password = "fleet-secret-password"
	r := startRedis(t, "--requirepass", password)
	api := sameContactAPI(t)
	const timeout = 100 * time.Millisecond
	body := fmt.Sprintf(`shared_cache redis://:%s@%s {
			timeout %s
		}
		bot shop {
			auth_url %s
		}`, password, r.addr(), timeout, api.URL)
	a, b := startGateway(t, "A", body), startGateway(t, "B", body)
	a.mustVerify(t, "alice-token")
	b.mustVerify(t, "alice-token")
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("%d API calls before Redis went down, want 1: nothing was shared", n)
	}

	// A miss waits for Redis twice (read, then write) before the breaker opens.
	const bound = 2*timeout + time.Second
	check := func(phase string) {
		t.Helper()
		for _, g := range []*gateway{a, b} {
			if took := g.mustVerify(t, "alice-token"); took > bound {
				t.Errorf("%s, gateway %s, cached visitor: %v, want at most %v", phase, g.name, took, bound)
			}
			for i := range sharedBreakerFailures + 2 {
				token := fmt.Sprintf("alice-%s-%d-token", strings.Fields(phase)[0], i)
				if took := g.mustVerify(t, token); took > bound {
					t.Errorf("%s, gateway %s, new visitor %d: %v, want at most %v", phase, g.name, i, took, bound)
				}
			}
		}
	}
	r.signal(t, syscall.SIGSTOP)
	check("hanging Redis")
	r.signal(t, syscall.SIGCONT)
	r.stop()
	check("stopped Redis")

	for _, g := range []*gateway{a, b} {
		logs := g.logs()
		if strings.Contains(logs, password) {
			t.Errorf("gateway %s logged the password:\n%s", g.name, logs)
		}
		if !strings.Contains(logs, "shared cache") {
			t.Errorf("gateway %s logged nothing about the shared cache going down:\n%s", g.name, logs)
		}
	}
}

// TestFleetPurgeThroughBotStar: verdicts of the ids that `bot *` serves are one set,
// shared by the fleet; a purge naming one of those ids, by token, acts on all of them
// on every gateway, and {"bot": "*"} purges them all.
func TestFleetPurgeThroughBotStar(t *testing.T) {
	r := startRedis(t)
	api := sameContactAPI(t)
	body := fmt.Sprintf(`shared_cache %s
		bot * {
			auth_url %s
		}`, r.url(""), api.URL)
	a, b := startGateway(t, "A", body), startGateway(t, "B", body)
	visit := func(g *gateway, bot, token string, calls int64, why string) {
		t.Helper()
		if got, _ := g.visitBot(t, bot, token); got != "verified//2" {
			t.Fatalf("gateway %s, bot %s: outcome %q", g.name, bot, got)
		}
		if n := api.calls.Load(); n != calls {
			t.Errorf("gateway %s, bot %s: %d API calls, want %d: %s", g.name, bot, n, calls, why)
		}
	}
	visit(a, "x", "alice-token", 1, "first visit")
	visit(b, "y", "alice-token", 1, "bot * shares its verdicts between ids and gateways")
	visit(a, "y", "alice-phone-token", 2, "another token")

	code, answer := a.purge(t, `{"bot": "x", "token": "alice-token"}`)
	if code != http.StatusOK || answer != `{"purged":1,"gateways":2}`+"\n" {
		t.Fatalf("purge by token through bot *: %d %s", code, answer)
	}
	visit(b, "y", "alice-token", 3, "the token purged under x is asked again under y, on the other gateway")
	visit(a, "z", "alice-token", 3, "the verdict reached since is shared")
	visit(b, "x", "alice-phone-token", 3, "another token is not purged")

	if code, answer := b.purge(t, `{"bot": "*"}`); code != http.StatusOK {
		t.Fatalf(`purge of "*": %d %s`, code, answer)
	}
	visit(a, "x", "alice-phone-token", 4, `{"bot": "*"} purges every id that bot * serves`)
	visit(b, "q", "alice-token", 5, `{"bot": "*"} purges every id that bot * serves`)
}

// TestFleetPurgeWhileRedisDown: a purge taken while the shared cache is down answers
// 503 and is applied on its gateway; once a fresh, empty server is back on the same
// address, it reaches the other gateway, which stops serving the token from its
// local cache within seconds.
func TestFleetPurgeWhileRedisDown(t *testing.T) {
	r := startRedis(t)
	api := sameContactAPI(t)
	a, b := startFleet(t, r, api, 100*time.Millisecond)
	a.mustVerify(t, "alice-token")
	b.mustVerify(t, "alice-token")
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("%d API calls before the outage, want 1", n)
	}
	r.stop()
	code, answer := a.purge(t, `{"bot": "shop", "token": "alice-token"}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(answer, "once the shared cache is back") {
		t.Fatalf("purge with the shared cache down: %d %s", code, answer)
	}
	a.mustVerify(t, "alice-token")
	if n := api.calls.Load(); n != 2 {
		t.Errorf("%d API calls, want 2: the purge was not applied on the gateway that took it", n)
	}
	b.mustVerify(t, "alice-token")
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("%d API calls, want 2: the other gateway cannot know of the purge yet", n)
	}

	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	eventuallyWithin(t, 15*time.Second, "the other gateway stops serving the purged token", func() bool {
		b.mustVerify(t, "alice-token")
		return api.calls.Load() == 3
	})
	for _, g := range []*gateway{a, b} {
		if !strings.Contains(g.logs(), "the server lost its data") {
			t.Errorf("gateway %s did not log that the server lost its data:\n%s", g.name, g.logs())
		}
	}
}

// TestFleetRecipe runs the one-machine fleet of deploy/fleet (its Caddyfile, as
// run.sh starts it, on free ports): two gateways share a verdict, and a purge on one
// reaches the other. docs/fleet.md shows that Caddyfile as it is.
func TestFleetRecipe(t *testing.T) {
	r := startRedis(t)
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	var gateways []*gateway
	for _, name := range []string{"1", "2"} {
		g := &gateway{name: name, httpAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)), adminAddr: "127.0.0.1:" + strconv.Itoa(freePort(t))}
		runGateway(t, g, bin, "deploy/fleet/Caddyfile", []string{
			"GATEWAY_PORT=" + strings.Split(g.httpAddr, ":")[1], "ADMIN_PORT=" + strings.Split(g.adminAddr, ":")[1],
			"API_PORT=" + strconv.Itoa(freePort(t)), "REDIS_URL=" + r.url(""),
		})
		gateways = append(gateways, g)
	}
	visit := func(g *gateway) string {
		req, _ := http.NewRequest(http.MethodGet, "http://"+g.httpAddr+"/", nil)
		req.Header.Set("X-Bot-Id", "demo-bot")
		req.Header.Set("X-Access-Token", "alice-token")
		resp, err := fleetClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	for _, g := range gateways {
		if got := visit(g); got != "verified  contact=2" {
			t.Fatalf("gateway %s: %q", g.name, got)
		}
	}
	if code, answer := gateways[1].purge(t, `{"bot":"demo-bot","token":"alice-token"}`); code != http.StatusOK || answer != `{"purged":1,"gateways":2}`+"\n" {
		t.Errorf("purge: %d %s", code, answer)
	}
	config, err := os.ReadFile("deploy/fleet/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile("docs/fleet.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(docs), string(config)) {
		t.Error("docs/fleet.md does not show deploy/fleet/Caddyfile as it is")
	}
}
