package customauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// docsEnv are the variables the docs' Caddyfiles read, as an operator would set them.
var docsEnv = map[string]string{
	"CA_SIGN_KEY":     "docs-signing-key-0123456789abcdef",
	"SHOP_CA_TOKEN":   "shop-api-token",
	"BACKEND_KEY":     "backend-key",
	"SHOP_JWT_SECRET": "shop-jwt-secret-0123456789abcdef",
	"REDIS_URL":       "redis://127.0.0.1:1", // refused at once; the gateway goes on without it
	"REDIS_TLS_URL":   "rediss://127.0.0.1:1",
}

// caddyfileBlock is a fenced Caddyfile in the docs.
var caddyfileBlock = regexp.MustCompile("(?s)```caddyfile\n(.*?)```")

// TestDocsCaddyfiles keeps every Caddyfile of the docs one that Caddy loads. Each file
// of testdata/docs is formatted as `caddy fmt` formats it, adapts without a warning and
// validates (every module provisioned, as `caddy validate` does). Every caddyfile block
// of README.md and docs/*.md is one of these files or Caddyfile.example, or a part of
// one, as it is there; so are the recipes whose own tests run them (the nginx recipe's
// Caddy, the fleet's).
func TestDocsCaddyfiles(t *testing.T) {
	tested := map[string]string{}
	for _, file := range []string{"Caddyfile.example", "testdata/nginx/Caddyfile", "deploy/fleet/Caddyfile"} {
		tested[file] = readDoc(t, file)
	}
	files, _ := filepath.Glob("testdata/docs/*.caddyfile")
	for _, file := range files {
		tested[file] = readDoc(t, file)
	}
	pages, _ := filepath.Glob("docs/*.md")
	pages = append(pages, "README.md")
	shown := map[string]bool{}
	for _, page := range pages {
		for _, m := range caddyfileBlock.FindAllStringSubmatch(readDoc(t, page), -1) {
			file := testedSource(tested, m[1])
			if file == "" {
				t.Errorf("%s shows a Caddyfile that is in no tested config (testdata/docs, Caddyfile.example, the nginx and fleet recipes):\n%s", page, m[1])
			}
			shown[file] = true
		}
	}

	for name := range docsEnv {
		t.Setenv(name, docsEnv[name])
	}
	t.Chdir(t.TempDir()) // relative paths in the configs (key files, logs) land here
	writeSigningKeys(t, "ca-2026.pem", "ca-2025.pem")
	writeRedisTLSFiles(t)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if !shown[file] {
				t.Errorf("no page shows %s", file)
			}
			loadDocCaddyfile(t, file, tested[file])
		})
	}
}

// testedSource names the tested config that block is, or is a part of: its lines
// appear one after the other in the config, each indented there by the same tabs.
func testedSource(tested map[string]string, block string) string {
	want := strings.Split(strings.TrimSuffix(block, "\n"), "\n")
	for file, text := range tested {
		lines := strings.Split(text, "\n")
		for i := range lines {
			if partAt(lines[i:], want) {
				return file
			}
		}
	}
	return ""
}

func partAt(lines, want []string) bool {
	if len(lines) < len(want) || !strings.HasSuffix(lines[0], want[0]) {
		return false
	}
	indent := strings.TrimSuffix(lines[0], want[0])
	if strings.Trim(indent, "\t") != "" {
		return false
	}
	for j, line := range want {
		if lines[j] != indent+line && !(line == "" && lines[j] == "") {
			return false
		}
	}
	return true
}

// loadDocCaddyfile checks that a Caddyfile is formatted, adapts without warnings, and
// validates.
func loadDocCaddyfile(t *testing.T, file, text string) {
	t.Helper()
	if formatted := string(caddyfile.Format([]byte(text))); formatted != text {
		t.Errorf("%s is not formatted as caddy fmt formats it; caddy fmt writes:\n%s", file, formatted)
	}
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": file})
	if err != nil {
		t.Fatalf("adapting %s: %v", file, err)
	}
	for _, w := range warnings {
		t.Errorf("adapting %s: warning: %s", file, w.String())
	}
	var cfg caddy.Config
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Errorf("validating %s: %v", file, err)
	}
}

// writeSigningKeys writes Ed25519 private keys in PEM (PKCS #8), as
// `openssl genpkey -algorithm ed25519` does.
func writeSigningKeys(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// writeRedisTLSFiles writes the files fleet_tls.caddyfile names: a private CA and a
// client certificate it signed, with its key.
func writeRedisTLSFiles(t *testing.T) {
	t.Helper()
	p := newTestPKI(t)
	for from, to := range map[string]string{p.ca: "redis-ca.pem", p.clientCert: "gateway.pem", p.clientKey: "gateway.key"} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

var (
	markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading      = regexp.MustCompile(`(?m)^#+ (.+)$`)
	notInSlug    = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
)

// TestDocsLinks keeps the links between the pages working: every relative link of
// README.md, docs/*.md, CHANGELOG.md and SECURITY.md names a file or folder of the
// repository, and its #anchor a heading of that page, as GitHub makes anchors.
func TestDocsLinks(t *testing.T) {
	pages, _ := filepath.Glob("docs/*.md")
	pages = append(pages, "README.md", "CHANGELOG.md", "SECURITY.md")
	for _, page := range pages {
		for _, m := range markdownLink.FindAllStringSubmatch(readDoc(t, page), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target, anchor, _ := strings.Cut(link, "#")
			file := page
			if target != "" {
				file = filepath.Join(filepath.Dir(page), target)
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s links to %s, which does not exist", page, link)
				continue
			}
			if anchor != "" && !slices.Contains(anchors(readDoc(t, file)), anchor) {
				t.Errorf("%s links to %s: %s has no heading with that anchor", page, link, file)
			}
		}
	}
}

// anchors returns the anchors GitHub gives a page's headings: lower case, punctuation
// dropped, spaces as hyphens.
func anchors(page string) []string {
	var out []string
	for _, m := range heading.FindAllStringSubmatch(page, -1) {
		slug := notInSlug.ReplaceAllString(strings.ToLower(m[1]), "")
		out = append(out, strings.ReplaceAll(slug, " ", "-"))
	}
	return out
}
