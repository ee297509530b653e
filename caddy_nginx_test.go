package customauth

// Integration tests of `answer` behind a real nginx and a real Caddy, with the recipe
// of testdata/nginx: what reaches the backend, in the same cases as the gateway's own
// tests.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/custom-auth/custom_auth/contact"
)

// nginxStack is nginx with the recipe, the Caddy it asks, and their upstreams.
type nginxStack struct {
	api    *identityAPI
	bots   *botsAPI
	be     *backend
	caddy  *caddytest.Tester
	client *http.Client
	// accessLog is the file of Caddy's access log.
	accessLog string
}

var nginxStackLoads atomic.Int64

// startNginxStack starts the identity and bots APIs, the backend, Caddy with the
// recipe's Caddyfile and nginx with the recipe.
func startNginxStack(t *testing.T) *nginxStack {
	s := &nginxStack{api: newIdentityAPI(t), bots: newBotsAPI(t), be: newBackend(t)}
	s.bots.set("tenant", fmt.Sprintf(`{"auth_url": %q, "whitelist": ["tenant.example.com"]}`, s.api.URL+"/ca"))
	t.Setenv("CA_AUTH_URL", s.api.URL+"/ca")
	t.Setenv("CA_BOTS_URL", s.bots.URL+"/bots/")
	t.Setenv("CA_SIGN_KEY", testSignKey)
	s.accessLog = filepath.Join(t.TempDir(), "access.log")
	t.Setenv("CA_ACCESS_LOG", s.accessLog)
	s.caddy = caddytest.NewTester(t)
	// The recipe's config is the same text in every test, with {env.*} values that
	// differ: a grace period of its own makes Caddy load it again.
	s.caddy.InitServer(testGlobalOptions(int(nginxStackLoads.Add(1)), "")+"\n"+recipeFile(t, "Caddyfile"), "caddyfile")
	startNginx(t, s.be.URL)
	s.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return s
}

// widget is a widget request to nginx for a bot, with a token and an origin; path
// may hold a query.
func widget(addr, path, bot, token, origin string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("X-Bot-Id", bot)
	if token != "" {
		req.Header.Set("X-Access-Token", token)
	}
	req.Header.Set("Origin", origin)
	return req
}

// send sends a request through nginx and returns the answer's status and body.
func (s *nginxStack) send(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// checkReceived asserts what the backend received: the contact of a verified visitor
// (id "" for none), the outcome, and never the token.
func checkReceived(t *testing.T, got *http.Request, id, status, reason string) {
	t.Helper()
	if s := got.Header.Values("X-Contact-Status"); len(s) != 1 || s[0] != status {
		t.Errorf("X-Contact-Status %q, want %q", s, status)
	}
	if r := got.Header.Values("X-Contact-Reason"); strings.Join(r, ",") != reason {
		t.Errorf("X-Contact-Reason %q, want %q", r, reason)
	}
	if ids := got.Header.Values("X-Contact-Id"); strings.Join(ids, ",") != id {
		t.Errorf("X-Contact-Id %q, want %q", ids, id)
	}
	for name, values := range got.Header {
		joined := strings.Join(values, ",")
		if strings.Contains(joined, "-token") || strings.Contains(got.URL.RawQuery, "-token") {
			t.Errorf("the token reached the backend in %s: %q (query %q)", name, values, got.URL.RawQuery)
		}
		if !contact.HasPrefix(name, contact.DefaultPrefix) {
			continue
		}
		if len(values) != 1 {
			t.Errorf("%s has %d values: %q", name, len(values), values)
		}
		for _, forged := range spoofedHeaders {
			if joined == forged {
				t.Errorf("spoofed %s: %q reached the backend", name, values)
			}
		}
		if id == "" && name != "X-Contact-Status" && name != "X-Contact-Reason" {
			t.Errorf("a fallback passed on %s: %q", name, values)
		}
	}
	if id == "" {
		return
	}
	c, err := contact.FromHeaders(got.Header, contact.DefaultPrefix)
	if err != nil || c.ID != id {
		t.Errorf("contact %+v, %v", c, err)
	}
	verifier, _ := contact.NewHMACVerifier([]byte(testSignKey))
	if _, err := verifier.Verify(got.Header.Get("X-Contact-Assertion"), got.Header.Get("X-Bot-Id")); err != nil {
		t.Errorf("assertion: %v", err)
	}
}

// TestIntegrationNginxOutcomes: verified, fallback, reject, `bot *` and a remote bot,
// through nginx's auth_request to custom_auth in answer mode.
func TestIntegrationNginxOutcomes(t *testing.T) {
	s := startNginxStack(t)
	for _, tc := range []struct {
		name, path, bot, token, origin string
		code                           int
		id, status, reason             string
	}{
		{"verified", "/chat/send", "shop", "alice-token", "https://shop.example.com", 200, "2", "verified", ""},
		{"fallback", "/chat/send", "shop", "wrong-token", "https://shop.example.com", 200, "", "fallback", "rejected"},
		{"fallback: origin", "/chat/send", "shop", "alice-token", "https://evil.example.com", 200, "", "fallback", "domain_not_allowed"},
		{"fallback: no token", "/chat/send", "shop", "", "https://shop.example.com", 200, "", "fallback", "missing_token"},
		{"reject: verified", "/strict/send", "shop", "alice-token", "https://shop.example.com", 200, "2", "verified", ""},
		{"reject: rejected", "/strict/send", "shop", "wrong-token", "https://shop.example.com", 401, "", "fallback", "rejected"},
		{"reject: origin", "/strict/send", "shop", "alice-token", "https://evil.example.com", 401, "", "fallback", "domain_not_allowed"},
		{"bot *", "/chat/send", "any-bot", "alice-token", "https://anywhere.example", 200, "2", "verified", ""},
		{"remote bot", "/chat/send", "tenant", "alice-token", "https://tenant.example.com", 200, "2", "verified", ""},
		{"remote bot: origin", "/chat/send", "tenant", "alice-token", "https://shop.example.com", 200, "", "fallback", "domain_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := widget(nginxAddr, tc.path, tc.bot, tc.token, tc.origin)
			spoof(req)
			resp, body := s.send(t, req)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if tc.code == http.StatusUnauthorized {
				checkProblem(t, resp.Header, []byte(body), tc.reason)
				s.be.mu.Lock()
				defer s.be.mu.Unlock()
				if s.be.taken != len(s.be.requests) {
					t.Error("a rejected request reached the backend")
				}
				return
			}
			got, _ := s.be.received(t)
			checkReceived(t, got, tc.id, tc.status, tc.reason)
		})
	}
}

// TestIntegrationNginxPreflight: the recipe passes the original method on, so a CORS
// preflight is recognised, and passes on even where visitors must be verified.
func TestIntegrationNginxPreflight(t *testing.T) {
	s := startNginxStack(t)
	req := widget(nginxAddr, "/strict/send", "", "", "https://shop.example.com")
	req.Method = http.MethodOptions
	req.Header.Set("Access-Control-Request-Method", "POST")
	if resp, body := s.send(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
	}
	got, _ := s.be.received(t)
	if got.Method != http.MethodOptions {
		t.Errorf("backend got %s", got.Method)
	}
	checkReceived(t, got, "", "fallback", "preflight")
}

// TestIntegrationNginxSpoofing: no contact header a client sends reaches the backend
// through the recipe, under any alias (case, `_`, `.`, mixed, a name custom_auth does
// not set) or as a trailer, both with nginx's defaults for header names and with
// underscores and dots let through; the contact headers are the answer's.
func TestIntegrationNginxSpoofing(t *testing.T) {
	s := startNginxStack(t)
	forged := map[string]string{
		"X-Contact_Label":  "ADMIN",
		"X_Contact-Email":  "mallory@evil.example",
		"X.Contact.Id":     "999",
		"x-contact.name":   "Mallory",
		"X-Contact-Vip":    "true",
		"X-Contact-Status": "verified",
		"X-CONTACT-REASON": "",
	}
	for _, addr := range []string{nginxAddr, nginxVariantAddr} {
		for _, tc := range []struct{ token, id, status, reason string }{
			{"alice-token", "2", "verified", ""},
			{"wrong-token", "", "fallback", "rejected"},
		} {
			t.Run(addr+" "+tc.token, func(t *testing.T) {
				req := widget(addr, "/chat/send", "shop", tc.token, "https://shop.example.com")
				spoof(req)
				for name, value := range forged {
					req.Header[name] = []string{value}
				}
				s.send(t, req)
				got, _ := s.be.received(t)
				checkReceived(t, got, tc.id, tc.status, tc.reason)
				for name := range got.Header {
					if contact.HasPrefix(name, contact.DefaultPrefix) && name != "X-Contact-Status" && got.Header.Get(name) == forged[name] {
						t.Errorf("forged %s reached the backend", name)
					}
				}
				if _, ok := got.Header["X-Contact-Vip"]; ok {
					t.Error("X-Contact-Vip, which custom_auth never sets, reached the backend")
				}
			})
			t.Run(addr+" trailers "+tc.token, func(t *testing.T) {
				req := chunkedRequest(tc.token)
				req.URL.Host = addr
				s.send(t, req)
				got, body := s.be.received(t)
				if body != "hello world" {
					t.Errorf("body %q", body)
				}
				checkReceived(t, got, tc.id, tc.status, tc.reason)
				for name, values := range got.Trailer {
					if contact.HasPrefix(name, contact.DefaultPrefix) {
						t.Errorf("trailer %s: %q reached the backend", name, values)
					}
				}
			})
		}
	}
}

// TestIntegrationNginxTokenRemoval: the token is read from a header, the query (in the
// original URI) or a cookie, and removed from the request nginx passes on; a query
// or cookie from which it could not be removed for sure is refused.
func TestIntegrationNginxTokenRemoval(t *testing.T) {
	s := startNginxStack(t)
	t.Cleanup(func() { checkAccessLog(t, s.accessLog) })
	for _, tc := range []struct {
		name, path, header, cookie string
		code                       int
		status, wantQuery          string
		wantCookie                 string
	}{
		{name: "header", path: "/chat?room=1", header: "alice-token", code: 200, status: "verified", wantQuery: "room=1"},
		{name: "query", path: "/ws/x?room=1&access_token=alice-token&x=%2F", code: 200, status: "verified", wantQuery: "room=1&x=%2F"},
		{name: "query first", path: "/ws/x?access_token=alice-token&room=1", code: 200, status: "verified", wantQuery: "room=1"},
		{name: "query only", path: "/ws/x?access_token=alice-token", code: 200, status: "verified"},
		{name: "cookie", path: "/sse/x", cookie: "theme=dark; ca_token=alice-token; lang=vi", code: 200, status: "verified", wantCookie: "theme=dark; lang=vi"},
		{name: "cookie first", path: "/sse/x", cookie: "ca_token=alice-token; lang=vi", code: 200, status: "verified", wantCookie: "lang=vi"},
		{name: "cookie only", path: "/sse/x", cookie: "ca_token=alice-token", code: 200, status: "verified"},
		{name: "cookie name in another case", path: "/sse/x", cookie: "CA_Token=alice-token; lang=vi", code: 200, status: "verified", wantCookie: "lang=vi"},
		{name: "fallback removes them too", path: "/ws/x?access_token=wrong-token&room=1", cookie: "ca_token=x-token", code: 200, status: "fallback", wantQuery: "room=1"},
		{name: "query twice", path: "/ws/x?access_token=alice-token&access_token=wrong-token", code: 400},
		{name: "query spelled with escapes", path: "/ws/x?%61ccess_token=alice-token", code: 400},
		{name: "query separated by ;", path: "/ws/x?room=1;access_token=alice-token", code: 400},
		{name: "cookie twice", path: "/sse/x", cookie: "ca_token=alice-token; ca_token=wrong-token", code: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := widget(nginxAddr, tc.path, "shop", tc.header, "https://shop.example.com")
			if tc.cookie != "" {
				req.Header.Set("Cookie", tc.cookie)
			}
			resp, body := s.send(t, req)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if tc.code != 200 {
				return
			}
			got, _ := s.be.received(t)
			if st := got.Header.Get("X-Contact-Status"); st != tc.status {
				t.Errorf("status %q, want %q (reason %q)", st, tc.status, got.Header.Get("X-Contact-Reason"))
			}
			if got.URL.RawQuery != tc.wantQuery {
				t.Errorf("backend got query %q, want %q", got.URL.RawQuery, tc.wantQuery)
			}
			if c := got.Header.Get("Cookie"); c != tc.wantCookie {
				t.Errorf("backend got Cookie %q, want %q", c, tc.wantCookie)
			}
			if _, ok := got.Header["X-Access-Token"]; ok {
				t.Error("backend got X-Access-Token")
			}
		})
	}
}

// checkAccessLog asserts that Caddy's access log has the answers' lines, with no token
// and no contact value.
func checkAccessLog(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(raw), `"uri":"/_custom_auth"`) {
		t.Fatalf("no answer in the access log: %v\n%s", err, raw)
	}
	for _, secret := range []string{"-token", "Nguy", "0912345678", "xample.com\",\"phone", "ORD-5578XZ", "VIP", "eyJ"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the access log has %q:\n%s", secret, raw)
		}
	}
}

// TestIntegrationNginxWebSocket: a WebSocket upgrade passes through the recipe with
// the verified contact, and the connection carries data both ways.
func TestIntegrationNginxWebSocket(t *testing.T) {
	s := startNginxStack(t)
	ws := newRecordingServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "not an upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo " + line)
		rw.Flush()
	})
	s.be.Config.Handler = ws.Config.Handler

	conn, err := net.Dial("tcp", nginxAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws/chat?access_token=alice-token HTTP/1.1\r\nHost: chat.example.com\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"X-Bot-Id: shop\r\nOrigin: https://shop.example.com\r\nX-Contact-Id: 999\r\n\r\n")
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	fmt.Fprintf(conn, "hello\n")
	if line, err := r.ReadString('\n'); err != nil || line != "echo hello\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	got := ws.lastRequest(t, "backend")
	checkReceived(t, got.Request, "2", "verified", "")
}

// TestIntegrationNginxServerSentEvents: an event stream passes through the recipe
// unbuffered: the first event arrives while the backend still holds the stream.
func TestIntegrationNginxServerSentEvents(t *testing.T) {
	s := startNginxStack(t)
	release := make(chan struct{})
	sse := newRecordingServer(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		<-release
		io.WriteString(w, "data: two\n\n")
	})
	s.be.Config.Handler = sse.Config.Handler
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	resp, err := s.client.Do(widget(nginxAddr, "/sse/events", "shop", "alice-token", "https://shop.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	first := make(chan string, 1)
	go func() { line, _ := r.ReadString('\n'); first <- line }()
	if line := within(t, "the first event while the stream is open", first); line != "data: one\n" {
		t.Fatalf("first line %q", line)
	}
	close(release)
	rest, _ := io.ReadAll(r)
	if !strings.Contains(string(rest), "data: two") {
		t.Errorf("rest of the stream %q", rest)
	}
	checkReceived(t, sse.lastRequest(t, "backend").Request, "2", "verified", "")
}

// TestIntegrationNginxMicroCache: the recipe's micro-cache serves an answer for a
// second, so a purge reaches it only when its entry expires, while the uncached
// location sees the purge at once. The admin API's test endpoint and the metrics see
// the answer mode's handler like any other.
func TestIntegrationNginxMicroCache(t *testing.T) {
	s := startNginxStack(t)
	statusOf := func(path string) string {
		t.Helper()
		s.send(t, widget(nginxAddr, path, "shop", "alice-token", "https://shop.example.com"))
		got, _ := s.be.received(t)
		return got.Header.Get("X-Contact-Status")
	}
	if st := statusOf("/cached/send"); st != "verified" {
		t.Fatalf("cached location: %q", st)
	}
	// The visitor logs out: the API no longer knows the token, and the verdict is purged.
	s.api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	if code, text := adminRequest(t, s.caddy, http.MethodPost, "http://localhost:2999/custom-auth/purge", `{"bot":"shop","token":"alice-token"}`); code != 200 {
		t.Fatalf("purge: %d %s", code, text)
	}
	if st := statusOf("/chat/send"); st != "fallback" {
		t.Errorf("uncached location after the purge: %q, want fallback", st)
	}
	if st := statusOf("/cached/send"); st != "verified" {
		t.Errorf("cached location right after the purge: %q; want the cached verified answer (the micro-cache's cost)", st)
	}
	eventually(t, "the micro-cache's entry expires", func() bool { return statusOf("/cached/send") == "fallback" })

	code, text := adminRequest(t, s.caddy, http.MethodPost, "http://localhost:2999/custom-auth/test", `{"bot":"shop","token":"wrong-token","origin":"https://shop.example.com"}`)
	var report adminReport
	if err := json.Unmarshal([]byte(text), &report); code != 200 || err != nil || report.Status != "fallback" || report.Reason != "rejected" {
		t.Errorf("admin test endpoint: %d %v: status %q reason %q error %q", code, err, report.Status, report.Reason, report.Error)
	}
	code, text = adminRequest(t, s.caddy, http.MethodGet, "http://localhost:2999/metrics", "")
	if code != 200 || !strings.Contains(text, `caddy_custom_auth_requests_total{bot="shop",reason="",status="verified"}`) {
		t.Errorf("metrics: %d, no verified request of shop counted", code)
	}
}
