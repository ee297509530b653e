package e2e

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

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

// newTab opens a tab in a browser context of its own (its own cookies and caches), closed
// at the end of the test. Steps on it take a deadline of their own (withDeadline).
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	tab, closeTab := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(closeTab)
	return tab
}

// withDeadline bounds the steps of a test in a tab.
func withDeadline(t *testing.T, tab context.Context, limit time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, limit)
	t.Cleanup(cancel)
	return ctx
}
