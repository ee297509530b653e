package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custom-auth/custom_auth/contact"
)

// TestTransports chats from a page on the widget's origin over each transport a chat
// widget uses, through the gateway of Caddyfile.example, to a chat backend of the test's
// own. The page is on shop.localhost (on the bot's whitelist) or evil.localhost (not);
// the chat is on chat.shop.localhost, another origin of the same site, so a cookie the
// shop sets on shop.localhost reaches it, as one set on example.com reaches
// chat.example.com.
func TestTransports(t *testing.T) {
	browser := startBrowser(t)
	pages, err := filepath.Abs("testdata/pages")
	if err != nil {
		t.Fatal(err)
	}

	const message = "Where is my order?"
	const chatHost = "chat.shop.localhost"
	verified := fmt.Sprintf(replyKnown, demoContact["name"])
	wrote := fmt.Sprintf(replyMessage, message)
	tests := []struct {
		name     string
		pageHost string
		// tokenCookie makes the page set the token cookie (and another) on shop.localhost.
		tokenCookie bool
		// call is the widget's JavaScript (transports.js), given the gateway's address
		// without a scheme.
		call        func(gateway string) string
		path        string // on the backend
		wantLogURI  string // the request's URI in the access log
		wantReason  string // "" for verified
		wantReplies []string
	}{
		{
			name:     "WebSocket, token in the query",
			pageHost: "shop.localhost",
			call: func(gateway string) string {
				return jsCall("chatOverWebSocket", "ws://"+gateway+"/ws?bot=demo-bot&access_token="+demoToken, message)
			},
			path:        "/ws",
			wantLogURI:  "/ws?bot=demo-bot",
			wantReplies: []string{verified, wrote},
		},
		{
			name:        "WebSocket, token in a cookie",
			pageHost:    "shop.localhost",
			tokenCookie: true,
			call: func(gateway string) string {
				return jsCall("chatOverWebSocket", "ws://"+gateway+"/ws?bot=demo-bot", message)
			},
			path:        "/ws",
			wantLogURI:  "/ws?bot=demo-bot",
			wantReplies: []string{verified, wrote},
		},
		{
			name:     "WebSocket from a page off the whitelist",
			pageHost: "evil.localhost",
			call: func(gateway string) string {
				return jsCall("chatOverWebSocket", "ws://"+gateway+"/ws?bot=demo-bot&access_token="+demoToken, message)
			},
			path:        "/ws",
			wantLogURI:  "/ws?bot=demo-bot",
			wantReason:  "domain_not_allowed",
			wantReplies: []string{replyAnonymous, wrote},
		},
		{
			name:        "EventSource, token in a cookie",
			pageHost:    "shop.localhost",
			tokenCookie: true,
			call: func(gateway string) string {
				return jsCall("chatOverEventSource", "http://"+gateway+"/events?bot=demo-bot")
			},
			path:        "/events",
			wantLogURI:  "/events?bot=demo-bot",
			wantReplies: []string{verified},
		},
		{
			name:     "fetch with the widget's headers",
			pageHost: "shop.localhost",
			call: func(gateway string) string {
				headers := map[string]string{"X-Bot-Id": "demo-bot", "X-Access-Token": demoToken}
				return jsCall("chatOverFetch", "http://"+gateway+"/chat", headers, message)
			},
			path:        "/chat",
			wantLogURI:  "/chat",
			wantReplies: []string{wrote},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend := startChatBackend(t)
			gateway := startExample(t, exampleOptions{chatBackend: backend.addr(), pages: pages})
			pageURL := gateway.pageURL(tt.pageHost, "/transports.html")
			origin := strings.TrimSuffix(pageURL, "/transports.html")
			gatewayHost := chatHost + ":" + gateway.ports[gatewayAddr]

			tab := newTab(t, browser)
			ctx := withDeadline(t, tab, 30*time.Second)
			if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
				t.Fatalf("opening %s: %v", pageURL, err)
			}
			if tt.tokenCookie {
				if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](jsCall("setTokenCookie", demoToken, "shop.localhost"))); err != nil {
					t.Fatalf("setting the cookie: %v", err)
				}
			}
			answers, err := chromedp.Run(ctx, chromedp.Evaluate[[]backendAnswer](tt.call(gatewayHost), chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("the widget on %s could not chat: %v", origin, err)
			}

			// What the widget got back.
			wantStatus := "verified"
			if tt.wantReason != "" {
				wantStatus = "fallback"
			}
			if len(answers) != len(tt.wantReplies) {
				t.Fatalf("the widget got %d answers, want %d: %+v", len(answers), len(tt.wantReplies), answers)
			}
			for i, answer := range answers {
				if answer.Reply != tt.wantReplies[i] || answer.Status != wantStatus || answer.Reason != tt.wantReason {
					t.Errorf("answer %d: %q, %s %q; want %q, %s %q", i, answer.Reply, answer.Status, answer.Reason,
						tt.wantReplies[i], wantStatus, tt.wantReason)
				}
			}

			// What the backend received.
			got := backend.only(t, tt.path)
			checkContact(t, got, wantStatus == "verified")
			checkNoToken(t, got)
			if tt.tokenCookie && got.Header.Get("Cookie") != "shop_session=s1" {
				t.Errorf("the backend got Cookie %q, want the shop's other cookie only", got.Header.Get("Cookie"))
			}

			// What Caddy logged: the request without its token, and nothing else with it.
			method := http.MethodGet
			if tt.path == "/chat" {
				method = http.MethodPost
			}
			logged := waitLog(t, gateway.accessLog, method+" "+tt.path, func(e logEntry) bool {
				return e.Request.Method == method && strings.HasPrefix(e.Request.URI, tt.path)
			})
			if logged.Request.URI != tt.wantLogURI {
				t.Errorf("the access log has URI %q, want %q", logged.Request.URI, tt.wantLogURI)
			}
			if tt.tokenCookie {
				// log_credentials is on, so the other cookies are logged; the token is not.
				if cookies := logged.Request.Headers["Cookie"]; len(cookies) != 1 || cookies[0] != "shop_session=s1" {
					t.Errorf("the access log has Cookie %q, want the shop's other cookie only", cookies)
				}
			}
			if tt.path == "/chat" {
				waitLog(t, gateway.accessLog, "preflight answered for "+origin, func(e logEntry) bool {
					return e.Request.Method == http.MethodOptions && e.Request.URI == "/chat" && e.Status == http.StatusNoContent &&
						len(e.Request.Headers["Origin"]) == 1 && e.Request.Headers["Origin"][0] == origin
				})
			}
			gateway.assertNoToken(t)
		})
	}
}

// TestErrorLogWithoutToken makes the gateway fail (502: the backend drops the
// connection). Caddy then logs the request with the error in its default log, not only
// in the access log, and the token must be in neither.
func TestErrorLogWithoutToken(t *testing.T) {
	backend := startChatBackend(t)
	gateway := startExample(t, exampleOptions{chatBackend: backend.addr()})

	req, err := http.NewRequest(http.MethodGet, gateway.gatewayURL("http", "127.0.0.1")+"/broken?bot=demo-bot&access_token="+demoToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", gateway.pageURL("shop.localhost", ""))
	req.Header.Set("X-Access-Token", demoToken)
	req.AddCookie(&http.Cookie{Name: "ca_token", Value: demoToken})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("the gateway answered %d, want 502", resp.StatusCode)
	}

	// Caddy tries a GET again when the backend drops the connection.
	received := backend.requests("/broken")
	if len(received) == 0 {
		t.Fatal("the backend received no request on /broken")
	}
	for _, got := range received {
		checkContact(t, got, true)
		checkNoToken(t, got)
	}
	logged := []logEntry{
		waitLog(t, gateway.output, "error logged for /broken", func(e logEntry) bool {
			return strings.HasPrefix(e.Logger, "http.log.error") && strings.HasPrefix(e.Request.URI, "/broken")
		}),
		waitLog(t, gateway.accessLog, "GET /broken", func(e logEntry) bool {
			return strings.HasPrefix(e.Request.URI, "/broken") && e.Status == http.StatusBadGateway
		}),
	}
	for _, e := range logged {
		if e.Request.URI != "/broken?bot=demo-bot" {
			t.Errorf("%s logged URI %q, want %q", e.Logger, e.Request.URI, "/broken?bot=demo-bot")
		}
	}
	gateway.assertNoToken(t)
}

// checkContact checks that the backend received the demo's contact, signed, or no
// contact at all.
func checkContact(t *testing.T, got receivedRequest, verified bool) {
	t.Helper()
	if !verified {
		if got.Contact != nil {
			t.Errorf("the backend got a contact for an anonymous visitor: %+v", got.Contact)
		}
		for name := range got.Header {
			if contact.HasPrefix(name, contact.DefaultPrefix) {
				t.Errorf("the backend got %s for an anonymous visitor", name)
			}
		}
		return
	}
	if got.Contact == nil {
		t.Fatalf("the backend got no verified contact; headers %v", got.Header)
	}
	if got.Contact.ID != demoContactID || got.Contact.Name != demoContact["name"] ||
		got.Contact.Email != demoContact["email"] || got.Contact.Metadata["order_id"] != "ORD-5578XZ" {
		t.Errorf("the backend got contact %+v, want the demo's", got.Contact)
	}
	if got.Header.Get("X-Contact-Id") != demoContactID {
		t.Errorf("the backend got X-Contact-Id %q, want %q", got.Header.Get("X-Contact-Id"), demoContactID)
	}
}

// checkNoToken checks that the token reached the backend by none of its sources: query
// parameter, header or cookie.
func checkNoToken(t *testing.T, got receivedRequest) {
	t.Helper()
	if strings.Contains(got.RawQuery, demoToken) || strings.Contains(got.RawQuery, "access_token") {
		t.Errorf("the backend got the token in the query: %q", got.RawQuery)
	}
	for name, values := range got.Header {
		for _, v := range values {
			if strings.Contains(v, demoToken) || strings.Contains(v, "ca_token") {
				t.Errorf("the backend got the token in %s: %q", name, v)
			}
		}
	}
	if _, ok := got.Header["X-Access-Token"]; ok {
		t.Errorf("the backend got an X-Access-Token header")
	}
}

// jsCall is a JavaScript call of a function of transports.js with JSON arguments.
func jsCall(function string, args ...any) string {
	encoded := make([]string, len(args))
	for i, arg := range args {
		b, err := json.Marshal(arg)
		if err != nil {
			panic(err) // the tests pass strings and maps of strings, which always encode
		}
		encoded[i] = string(b)
	}
	return function + "(" + strings.Join(encoded, ", ") + ")"
}

// TestCORS checks the CORS snippet of Caddyfile.example without a browser: a listed page
// gets its own origin back, with credentials, and an answer to its preflight; any other
// page gets no CORS header; every answer varies by Origin.
func TestCORS(t *testing.T) {
	demo := startExample(t, exampleOptions{})
	listed := demo.pageURL("shop.localhost", "")
	other := demo.pageURL("other.localhost", "")
	tests := []struct {
		name            string
		origin          string
		preflight       bool
		wantStatus      int // 0: any
		wantAllowOrigin string
	}{
		{name: "preflight of a listed page", origin: listed, preflight: true, wantStatus: http.StatusNoContent, wantAllowOrigin: listed},
		{name: "request of a listed page", origin: listed, wantStatus: http.StatusOK, wantAllowOrigin: listed},
		{name: "preflight of another page", origin: other, preflight: true},
		{name: "request of another page", origin: other, wantStatus: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodGet
			if tt.preflight {
				method = http.MethodOptions
			}
			req, err := http.NewRequest(method, demo.gatewayURL("http", "127.0.0.1")+"/chat", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Origin", tt.origin)
			if tt.preflight {
				req.Header.Set("Access-Control-Request-Method", http.MethodPost)
				req.Header.Set("Access-Control-Request-Headers", "x-bot-id,x-access-token")
			} else {
				req.Header.Set("X-Bot-Id", "demo-bot")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()

			if tt.wantStatus != 0 && resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Values("Access-Control-Allow-Origin"); tt.wantAllowOrigin == "" && len(got) != 0 ||
				tt.wantAllowOrigin != "" && (len(got) != 1 || got[0] != tt.wantAllowOrigin) {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.wantAllowOrigin)
			}
			wantCredentials := ""
			if tt.wantAllowOrigin != "" {
				wantCredentials = "true"
			}
			if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != wantCredentials {
				t.Errorf("Access-Control-Allow-Credentials %q, want %q", got, wantCredentials)
			}
			if tt.preflight && tt.wantAllowOrigin != "" {
				if got := resp.Header.Get("Access-Control-Allow-Headers"); got != "x-bot-id,x-access-token" {
					t.Errorf("Access-Control-Allow-Headers %q, want the headers the page asked for", got)
				}
				if got := resp.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(got, http.MethodPost) {
					t.Errorf("Access-Control-Allow-Methods %q, want POST among them", got)
				}
			}
			if got := resp.Header.Values("Vary"); !slices.Contains(got, "Origin") {
				t.Errorf("Vary %q, want Origin", got)
			}
		})
	}
}

// TestAbortedStreamLogsNoContact: a verified visitor closes an event stream, which
// reverse_proxy logs at WARN with the request it sent the backend. With the filters of
// Caddyfile.example, neither that line nor the access log has a contact value, a
// contact header, the assertion or the token.
func TestAbortedStreamLogsNoContact(t *testing.T) {
	backend := startChatBackend(t)
	gateway := startExample(t, exampleOptions{chatBackend: backend.addr()})

	req, err := http.NewRequest(http.MethodGet, gateway.gatewayURL("http", "127.0.0.1")+"/events?bot=demo-bot", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", gateway.pageURL("shop.localhost", ""))
	req.Header.Set("X-Access-Token", demoToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	event, err := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close() // the visitor leaves mid-stream
	if err != nil || !strings.HasPrefix(event, "data: ") {
		t.Fatalf("first event %q: %v", event, err)
	}
	received := backend.requests("/events")
	if len(received) != 1 {
		t.Fatalf("the backend received %d requests on /events", len(received))
	}
	checkContact(t, received[0], true)
	assertion := received[0].Header.Get("X-Contact-Assertion")

	waitLog(t, gateway.output, "the aborted stream", func(e logEntry) bool {
		return e.Message == "aborting with incomplete response" && strings.HasPrefix(e.Request.URI, "/events")
	})
	waitLog(t, gateway.accessLog, "GET /events", func(e logEntry) bool { return strings.HasPrefix(e.Request.URI, "/events") })
	personal := []string{"X-Contact-", demoContact["email"], "0912345678", "ORD-5578XZ", demoToken}
	if assertion != "" {
		personal = append(personal, assertion[:min(len(assertion), 40)])
	}
	for _, file := range []string{gateway.output, gateway.accessLog} {
		for i, line := range strings.Split(readFile(file), "\n") {
			for _, value := range personal {
				if strings.Contains(line, value) {
					t.Errorf("%q is in %s, line %d:\n%s", value, filepath.Base(file), i+1, line)
				}
			}
		}
	}
}
