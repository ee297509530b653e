package e2e

import (
	"strings"
	"testing"
)

// TestReadmeRecipes keeps the documented transport recipes the ones these tests run: the
// snippets and token sources of Caddyfile.example that docs/transports.md shows must be
// there as they are.
func TestReadmeRecipes(t *testing.T) {
	example := readFile("../Caddyfile.example")
	page := readFile("../docs/transports.md")
	if example == "" || page == "" {
		t.Fatal("cannot read ../Caddyfile.example or ../docs/transports.md")
	}

	var recipes []string
	for _, snippet := range []string{"(log_without_token) {", "(cors) {"} {
		recipes = append(recipes, topLevelBlock(t, example, snippet))
	}
	for _, directive := range []string{"bot_id ", "token ", "import log_without_token"} {
		recipes = append(recipes, lineStarting(t, example, directive))
	}
	for _, recipe := range recipes {
		if !strings.Contains(page, recipe) {
			t.Errorf("docs/transports.md does not show this part of Caddyfile.example as it is:\n%s", recipe)
		}
	}
}

// topLevelBlock returns the block of a Caddyfile that opens with the line first, up to
// and with its closing brace.
func topLevelBlock(t *testing.T, caddyfile, first string) string {
	t.Helper()
	start := strings.Index(caddyfile, "\n"+first+"\n")
	if start < 0 {
		t.Fatalf("Caddyfile.example has no %q", first)
	}
	block := caddyfile[start+1:]
	end := strings.Index(block, "\n}\n")
	if end < 0 {
		t.Fatalf("Caddyfile.example does not close %q", first)
	}
	return block[:end+2]
}

// lineStarting returns the first line of a Caddyfile that starts with prefix after its
// indentation, without the indentation.
func lineStarting(t *testing.T, caddyfile, prefix string) string {
	t.Helper()
	for line := range strings.SplitSeq(caddyfile, "\n") {
		if line = strings.TrimLeft(line, "\t"); strings.HasPrefix(line, prefix) {
			return line
		}
	}
	t.Fatalf("Caddyfile.example has no line starting with %q", prefix)
	return ""
}
