// Package e2e drives custom_auth in a real browser, through a real gateway: Debian's
// headless Chromium, and the demo built from ../demo/server (Caddy with custom_auth
// running Caddyfile.example, moved to free ports so that these tests never share a port
// with the module's other tests, and the chat backend with its SQLite contact store).
//
// TestDemoPage chats on the demo page from an origin on the bot's whitelist and from one
// that is not; TestContactDetails follows one contact over visits (new, updated,
// unchanged, its history) and an anonymous visitor who types that contact's email.
// TestTransports opens WebSockets, event streams and cross-origin requests to a chat
// backend of the test's own. They check that the access token is in none of Caddy's
// logs, as TestErrorLogWithoutToken does for an error. TestCORS checks the CORS snippet
// without a browser, TestDemoCommand what the demo prints and that a second copy
// refuses to start, and TestReadmeRecipes that docs/transports.md shows the recipes
// these tests run.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// `go test -artifacts -outputdir DIR` writes the screenshots under DIR, which the
	// testing package does not create.
	flag.Parse()
	if dir := flag.Lookup("test.outputdir").Value.String(); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if demoBinary.dir != "" {
		os.RemoveAll(demoBinary.dir) // built by the first test that needs the demo
	}
	os.Exit(code)
}
