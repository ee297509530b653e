package customauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs `custom-auth test` with args as Caddy would, and returns its exit status
// and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := -1
	exited := false
	cmd := newTestCommand(&stdout, &stderr, func(c int) {
		if !exited {
			code, exited = c, true
		}
	})
	cmd.SetArgs(args)
	_ = cmd.Execute()
	if !exited {
		t.Fatalf("the command did not exit; stderr: %s", stderr.String())
	}
	return code, stdout.String(), stderr.String()
}

func writeCaddyfile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func cliConfig(t *testing.T, api *identityAPI) string {
	return writeCaddyfile(t, fmt.Sprintf(`
:0 {
	custom_auth /other/* {
		bot elsewhere {
			off
		}
	}
	custom_auth {
		sign_key 0123456789abcdef0123456789abcdef
		bot shop {
			auth_url %s/ca
			auth_header Authorization "Bearer api-key"
			forward user_id
			whitelist shop.example.com
		}
	}
	respond ok
}`, api.URL))
}

func TestCLIVerified(t *testing.T) {
	api := newIdentityAPI(t)
	config := cliConfig(t, api)
	const token = "alice-token"
	code, out, errOut := runCLI(t, "--config", config, "--adapter", "caddyfile", "--bot", "shop", "--token", token,
		"--origin", "https://shop.example.com", "--field", "user_id=2")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"1. bot", "2. whitelist", "3. identity", "Result: verified", "X-Contact-Id: 2",
		"X-Contact-Name: Nguy%E1%BB%85n%20V%C4%83n%20B", "X-Contact-Assertion: ey", `"user_id":"2"`, "HTTP 200"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, token) {
		t.Errorf("token printed:\n%s", out)
	}
	if body := api.lastBody(t); body["access_token"] != token || body["user_id"] != "2" {
		t.Errorf("the real API got %v", body)
	}
}

func TestCLIJSON(t *testing.T) {
	api := newIdentityAPI(t)
	code, out, _ := runCLI(t, "--config", cliConfig(t, api), "--adapter", "caddyfile", "--bot", "shop",
		"--token", "alice-token", "--origin", "https://shop.example.com", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var report struct {
		Status  string            `json:"status"`
		Headers map[string]string `json:"headers"`
		Steps   []struct {
			Step   string `json:"step"`
			Passed bool   `json:"passed"`
		} `json:"steps"`
		APIStatus int `json:"api_status"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if report.Status != "verified" || report.Headers["X-Contact-Id"] != "2" || len(report.Steps) != 3 || report.APIStatus != 200 {
		t.Errorf("report = %+v", report)
	}
}

func TestCLIFallbacks(t *testing.T) {
	api := newIdentityAPI(t)
	config := cliConfig(t, api)
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"rejected", []string{"--bot", "shop", "--token", "wrong-token", "--origin", "https://shop.example.com"}, 1, "reason: rejected"},
		{"missing token", []string{"--bot", "shop", "--origin", "https://shop.example.com"}, 1, "reason: missing_token"},
		{"origin", []string{"--bot", "shop", "--token", "alice-token", "--origin", "https://evil.example.com"}, 1, "reason: domain_not_allowed"},
		{"mismatch", []string{"--bot", "shop", "--token", "alice-token", "--origin", "https://shop.example.com", "--field", "user_id=3"}, 1, "reason: identity_mismatch"},
		{"disabled, in the second handler", []string{"--bot", "elsewhere"}, 1, "reason: disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"--config", config, "--adapter", "caddyfile"}, tc.args...)...)
			if code != tc.code || !strings.Contains(out, tc.output) {
				t.Errorf("exit %d, want %d; output lacks %q:\n%s%s", code, tc.code, tc.output, out, errOut)
			}
		})
	}
}

func TestCLIUsageErrors(t *testing.T) {
	api := newIdentityAPI(t)
	config := cliConfig(t, api)
	broken := writeCaddyfile(t, ":0 {\n\tcustom_auth {\n\t\tbot b {\n\t\t\tidentify_by nickname\n\t\t}\n\t}\n}\n")
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown bot", []string{"--config", config, "--adapter", "caddyfile", "--bot", "nobody", "--token", "t"}, `no custom_auth handler knows bot "nobody"`},
		{"bad flag", []string{"--config", config, "--bot", "shop", "--tokn", "t"}, "unknown flag: --tokn"},
		{"no config", []string{"--bot", "shop"}, "--config is required"},
		{"no bot", []string{"--config", config}, "--bot is required"},
		{"missing config file", []string{"--config", "/nonexistent/Caddyfile", "--adapter", "caddyfile", "--bot", "shop"}, "/nonexistent/Caddyfile"},
		{"broken config", []string{"--config", broken, "--adapter", "caddyfile", "--bot", "b"}, "Caddyfile:4"},
		{"bad field", []string{"--config", config, "--adapter", "caddyfile", "--bot", "shop", "--field", "user_id"}, "want name=value"},
		{"undefined field", []string{"--config", config, "--adapter", "caddyfile", "--bot", "shop", "--field", "shoe_size=9"}, "no such field"},
		{"no handler", []string{"--config", writeCaddyfile(t, ":0 {\n\trespond ok\n}\n"), "--adapter", "caddyfile", "--bot", "shop"}, "no custom_auth handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, want 2; stderr lacks %q:\n%s%s", code, tc.stderr, out, errOut)
			}
		})
	}
}

// TestCLIHidesURLCredentials: the user information and the query of a configured URL
// are credentials, and the test never prints them, in text or JSON, verified or not.
func TestCLIHidesURLCredentials(t *testing.T) {
	api := newIdentityAPI(t)
	withCredentials := strings.Replace(api.URL, "http://", "http://ca-user:url-password@", 1) + "/ca?api_key=query-secret"
	config := writeCaddyfile(t, fmt.Sprintf(`
:0 {
	custom_auth {
		bot shop {
			auth_url %s
		}
	}
	respond ok
}`, withCredentials))
	for _, args := range [][]string{
		{"--token", "alice-token"},
		{"--token", "alice-token", "--json"},
		{"--token", "boom-token"},
		{"--token", "boom-token", "--json"},
	} {
		code, out, errOut := runCLI(t, append([]string{"--config", config, "--adapter", "caddyfile", "--bot", "shop"}, args...)...)
		if code == exitUsage {
			t.Fatalf("%v: usage error: %s", args, errOut)
		}
		for _, secret := range []string{"url-password", "ca-user", "query-secret"} {
			if strings.Contains(out+errOut, secret) {
				t.Errorf("%v: printed %q:\n%s", args, secret, out)
			}
		}
		if !strings.Contains(out, "REDACTED") && !strings.Contains(args[len(args)-1], "json") && code == exitVerified {
			t.Errorf("%v: the identity API's URL is not shown at all:\n%s", args, out)
		}
	}
}
