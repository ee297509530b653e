// Package e2e drives the demo of Caddyfile.example in a real browser: Debian's headless
// Chromium loads the demo page from an origin on the bot's whitelist and from one that
// is not, and the chat widget on it must show what the chat backend really received.
//
// Caddy runs as its own process, built from ../caddymodule, with Caddyfile.example moved
// to free ports, so these tests never share a port with the module's other tests.
package e2e

import (
	"context"
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

	"github.com/chromedp/chromedp"
)

// The demo's addresses in Caddyfile.example, each moved to a free port for the test.
var demoPorts = []string{
	":8080", // the gateway
	":8081", // the demo page
	":9001", // the stand-in identity API
	":9002", // the stand-in chat backend
}

// demo is the Caddy process that serves Caddyfile.example, started by the first test
// that needs it and stopped by TestMain.
var demo struct {
	once        sync.Once
	err         error
	dir         string
	cmd         *exec.Cmd
	exited      chan struct{}
	pagePort    string
	gatewayPort string
}

func TestMain(m *testing.M) {
	code := m.Run()
	stopDemo()
	os.Exit(code)
}

func TestDemoPage(t *testing.T) {
	browser := startBrowser(t)
	pagePort := startDemo(t)

	const verified = "Verified: Nguyễn Văn B, b@example.com, metadata order_id ORD-5578XZ, order_quantity 3"
	const notAllowed = "Anonymous: the backend would ask for contact details (reason: domain_not_allowed)"

	tests := []struct {
		name        string
		host        string
		page        string
		screenshot  string
		wantStatus  string
		wantText    string
		wantContact map[string]string // rows of the widget's contact table
	}{
		{
			name:       "whitelisted origin",
			host:       "shop.localhost",
			page:       "/",
			screenshot: "shop-index.png",
			wantStatus: "verified",
			wantText:   verified,
			wantContact: map[string]string{
				"id": "2", "name": "Nguyễn Văn B", "email": "b@example.com",
				"phone-number": "0912345678", "country-code": "+84", "label": "VIP",
				"identify-by": "id",
			},
		},
		{
			name:        "origin not on the whitelist",
			host:        "evil.localhost",
			page:        "/",
			screenshot:  "evil-index.png",
			wantStatus:  "fallback",
			wantText:    notAllowed,
			wantContact: map[string]string{"contact": "none: no X-Contact-* header reached the backend"},
		},
		{
			name:       "forged contact headers from the whitelisted origin",
			host:       "shop.localhost",
			page:       "/forged.html",
			screenshot: "shop-forged.png",
			wantStatus: "verified",
			wantText:   verified,
			wantContact: map[string]string{
				"id": "2", "name": "Nguyễn Văn B", "email": "b@example.com",
				"phone-number": "0912345678", "country-code": "+84", "label": "VIP",
				"identify-by": "id",
			},
		},
		{
			name:        "forged contact headers from another origin",
			host:        "evil.localhost",
			page:        "/forged.html",
			screenshot:  "evil-forged.png",
			wantStatus:  "fallback",
			wantText:    notAllowed,
			wantContact: map[string]string{"contact": "none: no X-Contact-* header reached the backend"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := "http://" + tt.host + ":" + pagePort + tt.page
			got, shot := showWidget(t, browser, url)

			file := filepath.Join(t.ArtifactDir(), tt.screenshot)
			if err := os.WriteFile(file, shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot of %s: %s", url, file)

			if got.Status != tt.wantStatus || got.Text != tt.wantText {
				t.Errorf("%s: widget shows %s %q, want %s %q", url, got.Status, got.Text, tt.wantStatus, tt.wantText)
			}
			for name, want := range tt.wantContact {
				if got.Contact[name] != want {
					t.Errorf("%s: contact %s = %q, want %q", url, name, got.Contact[name], want)
				}
			}
			for name, value := range got.Contact {
				if _, ok := tt.wantContact[name]; !ok && name != "assertion" {
					t.Errorf("%s: unexpected contact %s = %q", url, name, value)
				}
				if strings.Contains(value, "Admin") {
					t.Errorf("%s: the forged contact reached the backend: %s = %q", url, name, value)
				}
			}
			if _, ok := got.Contact["assertion"]; ok != (tt.wantStatus == "verified") {
				t.Errorf("%s: assertion present = %v, want %v", url, ok, tt.wantStatus == "verified")
			}
		})
	}
}

// widgetState is what the chat widget shows once its request has come back.
type widgetState struct {
	Status  string            `json:"status"`
	Text    string            `json:"text"`
	Contact map[string]string `json:"contact"`
}

const readWidget = `(() => {
	const result = document.querySelector(".chat-result");
	const contact = {};
	for (const row of document.querySelectorAll(".chat-contact tr")) {
		contact[row.cells[0].textContent] = row.cells[1].textContent;
	}
	return {status: result ? result.dataset.status : "", text: result ? result.textContent : "", contact};
})()`

// showWidget opens url in a new tab, waits until the widget has its answer, and returns
// what it shows and a PNG screenshot of the whole page.
func showWidget(t *testing.T, browser context.Context, url string) (widgetState, []byte) {
	t.Helper()
	tab, closeTab := chromedp.NewContext(browser)
	defer closeTab()
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()

	err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`.chat-result:not([data-status="pending"])`)),
	)
	if err != nil {
		// Show what the page got to before failing.
		ctx, cancel := context.WithTimeout(tab, 5*time.Second)
		defer cancel()
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[widgetState](readWidget))
		t.Fatalf("%s: the widget shows no answer (%v); it shows %+v", url, err, state)
	}
	state, err := chromedp.Run(ctx, chromedp.Evaluate[widgetState](readWidget))
	if err != nil {
		t.Fatalf("%s: reading the widget: %v", url, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("%s: screenshot: %v", url, err)
	}
	return state, shot
}

// startBrowser starts headless Chromium with a fresh profile for the test. Without
// Chromium the test is skipped, except in CI, where it fails.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := findChromium()
	if path == "" {
		const msg = "Chromium not found (looked for chromium and chromium-browser on PATH, /usr/bin/chromium); install it with: apt-get install -y chromium"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1100, 760),
	)
	// The browser lives for the whole test, and no longer than this.
	life, stop := context.WithTimeout(context.Background(), 3*time.Minute)
	alloc, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	// Registered after TempDir, so the browser has exited before its profile is removed.
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		stop()
	})
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return browser
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return ""
}

// startDemo builds Caddy with custom_auth, runs Caddyfile.example on free ports from the
// repository root (where the demo page's folder is), and returns the demo page's port.
func startDemo(t *testing.T) string {
	t.Helper()
	demo.once.Do(func() { demo.err = runDemo() })
	if demo.err != nil {
		t.Fatalf("starting the demo: %v%s", demo.err, demoLog())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Caddy's output:%s", demoLog())
		}
	})
	return demo.pagePort
}

func runDemo() error {
	dir, err := os.MkdirTemp("", "custom_auth-e2e-")
	if err != nil {
		return err
	}
	demo.dir = dir

	caddy := filepath.Join(dir, "caddy")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", caddy, "../caddymodule").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ../caddymodule: %v\n%s", err, out)
	}

	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		return err
	}
	ports, err := freePorts(len(demoPorts))
	if err != nil {
		return err
	}
	config := string(example)
	replace := []string{"admin localhost:2019", "admin off"}
	for i, old := range demoPorts {
		replace = append(replace, old, ":"+ports[i])
	}
	for i := 0; i < len(replace); i += 2 {
		if !strings.Contains(config, replace[i]) {
			return fmt.Errorf("Caddyfile.example has no %q any more; update the e2e test", replace[i])
		}
	}
	config = strings.NewReplacer(replace...).Replace(config)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		return err
	}
	demo.gatewayPort, demo.pagePort = ports[0], ports[1]

	output, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(caddy, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Dir = ".." // the repository root, as the README runs the demo
	cmd.Env = append(os.Environ(),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
	)
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		output.Close()
		return err
	}
	demo.cmd = cmd
	demo.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		output.Close()
		close(demo.exited)
	}()
	return waitDemo(30 * time.Second)
}

// waitDemo waits until the gateway and the demo page answer.
func waitDemo(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	ready := func(url, host string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready("http://127.0.0.1:"+demo.gatewayPort+"/chat", "localhost:"+demo.gatewayPort) &&
			ready("http://127.0.0.1:"+demo.pagePort+"/widget.js", "shop.localhost:"+demo.pagePort) {
			return nil
		}
		select {
		case <-demo.exited:
			return errors.New("Caddy exited")
		case <-ctx.Done():
			return fmt.Errorf("Caddy did not answer within %v", limit)
		case <-tick.C:
		}
	}
}

func demoLog() string {
	if demo.dir == "" {
		return ""
	}
	out, err := os.ReadFile(filepath.Join(demo.dir, "caddy.log"))
	if err != nil || len(out) == 0 {
		return ""
	}
	return "\n" + string(out)
}

func stopDemo() {
	if demo.cmd != nil {
		demo.cmd.Process.Signal(os.Interrupt)
		select {
		case <-demo.exited:
		case <-time.After(10 * time.Second):
			demo.cmd.Process.Kill()
			<-demo.exited
		}
	}
	if demo.dir != "" {
		os.RemoveAll(demo.dir)
	}
}

// freePorts returns n distinct ports that are free on 127.0.0.1 at the time of the call.
func freePorts(n int) ([]string, error) {
	var ports []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}
