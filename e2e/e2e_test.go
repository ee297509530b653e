// Package e2e drives custom_auth in a real browser, through a real gateway: Debian's
// headless Chromium, and Caddy built from ../caddymodule running Caddyfile.example (moved
// to free ports, so these tests never share a port with the module's other tests).
//
// TestDemoPage chats on the demo page from an origin on the bot's whitelist and from one
// that is not. TestTransports opens WebSockets, event streams and cross-origin requests
// to a chat backend of the test's own. Both check that the access token is in none of
// Caddy's logs, as TestErrorLogWithoutToken does for an error. TestCORS checks the CORS
// snippet without a browser, and TestReadmeRecipes that docs/transports.md shows the recipes
// these tests run.
package e2e

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if caddyBinary.dir != "" {
		os.RemoveAll(caddyBinary.dir) // built by the first test that needs Caddy
	}
	os.Exit(code)
}
