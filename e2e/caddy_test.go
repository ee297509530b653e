package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The demo's access token. It must appear nowhere in what Caddy writes.
const demoToken = "alice-token"

// The demo's addresses in Caddyfile.example, each moved to a free port for the test.
const (
	gatewayAddr  = ":8080"
	pageAddr     = ":8081"
	identityAddr = ":9001"
	backendAddr  = ":9002"
)

// demoBinary is the demo (../demo/server: Caddy with custom_auth, and the chat backend
// with its SQLite contact store), built once for all tests and removed by TestMain.
var demoBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func buildDemo(t *testing.T) string {
	t.Helper()
	demoBinary.once.Do(func() {
		demoBinary.dir, demoBinary.err = os.MkdirTemp("", "custom_auth-e2e-")
		if demoBinary.err != nil {
			return
		}
		demoBinary.path = filepath.Join(demoBinary.dir, "demo")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, "go", "build", "-o", demoBinary.path, "./demo/server")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			demoBinary.err = fmt.Errorf("go build ./demo/server: %v\n%s", err, out)
		}
	})
	if demoBinary.err != nil {
		t.Fatal(demoBinary.err)
	}
	return demoBinary.path
}

// exampleOptions changes what Caddyfile.example serves, for one test.
type exampleOptions struct {
	// chatBackend replaces the stand-in chat backend behind the gateway (host:port).
	chatBackend string
	// pages replaces the demo page's folder (DEMO_ROOT).
	pages string
	// identityAPI replaces the stand-in identity API's URL in the bot's auth_url.
	identityAPI string
}

// example is a Caddy process running Caddyfile.example on free ports, with the gateway's
// access log in a file.
type example struct {
	ports map[string]string // the address in Caddyfile.example → the port it runs on
	// accessLog is the gateway's access log, with the filters of Caddyfile.example.
	accessLog string
	// output is what Caddy writes to stderr: its default log, errors included.
	output string
	// stdout is what the demo prints for a person.
	stdout string
	// args run the demo as this test does, on the same ports.
	args []string
	env  []string
}

// gatewayURL is the gateway's address as a page reaches it, on host.
func (e *example) gatewayURL(scheme, host string) string {
	return scheme + "://" + host + ":" + e.ports[gatewayAddr]
}

// pageURL is the address of a page of the demo page site, on host.
func (e *example) pageURL(host, path string) string {
	return "http://" + host + ":" + e.ports[pageAddr] + path
}

// startExample runs the demo with Caddyfile.example until the end of the test. Besides
// opts, the only changes are the ports, the chat backend's SQLite file, no admin endpoint, the access log going to a file instead of
// stderr, and `log_credentials`, so that cookies reach the log filters as they came
// (Caddy otherwise writes REDACTED for the whole Cookie header, and a missing cookie
// filter would go unnoticed). Once Caddy has stopped, and so written every line, the
// test fails if the access token is anywhere in what it wrote.
func startExample(t *testing.T, opts exampleOptions) *example {
	t.Helper()
	demoProgram := buildDemo(t)
	source, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &example{
		ports:     make(map[string]string),
		accessLog: filepath.Join(dir, "access.log"),
		output:    filepath.Join(dir, "caddy.log"),
		stdout:    filepath.Join(dir, "stdout.txt"),
	}

	// Replacements are made in one pass; the first one that matches at a position wins.
	replace := []string{
		"admin localhost:2019", "admin off",
		"protocols h1", "protocols h1\n\t\tlog_credentials",
		"output stderr", "output file " + e.accessLog,
	}
	if opts.chatBackend != "" {
		replace = append(replace, "reverse_proxy 127.0.0.1"+backendAddr, "reverse_proxy "+opts.chatBackend)
	}
	if opts.identityAPI != "" {
		replace = append(replace, "auth_url http://127.0.0.1"+identityAddr+"/ca", "auth_url "+opts.identityAPI)
	}
	addrs := []string{gatewayAddr, pageAddr, identityAddr, backendAddr}
	ports := freePorts(t, len(addrs))
	for i, addr := range addrs {
		e.ports[addr] = ports[i]
		replace = append(replace, addr, ":"+ports[i])
	}
	for i := 0; i < len(replace); i += 2 {
		if !strings.Contains(string(source), replace[i]) {
			t.Fatalf("Caddyfile.example has no %q any more; update the e2e test", replace[i])
		}
	}
	config := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(strings.NewReplacer(replace...).Replace(string(source))), 0o644); err != nil {
		t.Fatal(err)
	}

	e.args = []string{"-config", config, "-db", filepath.Join(dir, "contacts.db"), "-backend", "127.0.0.1:" + e.ports[backendAddr]}
	e.env = append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
	)
	if opts.pages != "" {
		e.env = append(e.env, "DEMO_ROOT="+opts.pages)
	}
	output, err := os.Create(e.output)
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := os.Create(e.stdout)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(demoProgram, e.args...)
	cmd.Dir = ".." // the repository root, as the README runs the demo
	cmd.Env = e.env
	cmd.Stdout, cmd.Stderr = stdout, output
	if err := cmd.Start(); err != nil {
		output.Close()
		stdout.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		output.Close()
		stdout.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		e.assertNoToken(t)
		if t.Failed() {
			t.Logf("the demo's output:\n%s\n%s", readFile(e.stdout), readFile(e.output))
		}
	})

	if err := e.waitListening(exited, 30*time.Second); err != nil {
		t.Fatalf("starting the demo: %v\n%s\n%s", err, readFile(e.stdout), readFile(e.output))
	}
	return e
}

// waitListening waits until every site of the example answers HTTP.
func (e *example) waitListening(exited <-chan struct{}, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	answers := func(port string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/", nil)
		if err != nil {
			return false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		all := true
		for _, port := range e.ports {
			all = all && answers(port)
		}
		if all {
			return nil
		}
		select {
		case <-exited:
			return errors.New("Caddy exited")
		case <-ctx.Done():
			return fmt.Errorf("Caddy did not answer within %v", limit)
		case <-tick.C:
		}
	}
}

// logEntry is a line of Caddy's log, as far as the tests read it.
type logEntry struct {
	Logger  string `json:"logger"`
	Message string `json:"msg"`
	Request struct {
		Method  string              `json:"method"`
		URI     string              `json:"uri"`
		Headers map[string][]string `json:"headers"`
	} `json:"request"`
	Status int `json:"status"`
}

// waitLog waits until a line of a Caddy log file matches. Caddy writes an access log line
// when a request ends, which for a WebSocket or an event stream is after the page has
// seen the answer, hence the wait.
func waitLog(t *testing.T, file string, what string, match func(logEntry) bool) logEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, entry := range readLog(t, file) {
			if match(entry) {
				return entry
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s in %s within 10s; it has:\n%s", what, file, readFile(file))
		case <-tick.C:
		}
	}
}

func readLog(t *testing.T, file string) []logEntry {
	t.Helper()
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []logEntry
	lines := bufio.NewScanner(f)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var entry logEntry
		if json.Unmarshal(lines.Bytes(), &entry) == nil {
			entries = append(entries, entry)
		}
	}
	return entries
}

// assertNoToken fails the test if the access token appears anywhere in what Caddy
// wrote: its access log and its own output.
func (e *example) assertNoToken(t *testing.T) {
	t.Helper()
	for _, file := range []string{e.accessLog, e.output, e.stdout} {
		for i, line := range strings.Split(readFile(file), "\n") {
			if strings.Contains(line, demoToken) {
				t.Errorf("the access token is in %s, line %d:\n%s", filepath.Base(file), i+1, line)
			}
		}
	}
}

func readFile(file string) string {
	b, _ := os.ReadFile(file)
	return string(b)
}

// freePorts returns n distinct ports that are free on 127.0.0.1 at the time of the call.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return ports
}
