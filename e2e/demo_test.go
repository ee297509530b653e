package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// What the demo's stand-in chat backend answers (Caddyfile.example): a greeting when
// the chat opens, a reply to a message.
const (
	demoGreetingKnown     = "Hello! We already know who you are, so there is no need to introduce yourself. How can we help?"
	demoGreetingAnonymous = "Hello! Before we start, may we have your name and email address?"
	demoReplyKnown        = "Thank you. An agent can see your contact details and will answer here shortly."
	demoReplyAnonymous    = "Thank you. So that an agent can answer, please leave your name and email address first."
)

// The demo's identity API answers this contact for the demo token, as the contact panel
// shows it.
var demoContact = map[string]string{
	"id":          "2",
	"name":        "Nguyễn Văn B",
	"email":       "b@example.com",
	"phone":       "+84 0912345678",
	"label":       "VIP",
	"metadata":    "order_id: ORD-5578XZ, order_quantity: 3",
	"identify-by": "id",
}

func TestDemoPage(t *testing.T) {
	browser := startBrowser(t)
	demo := startExample(t, exampleOptions{})

	const message = "Where is my order?"
	const anonymous = "Anonymous visitor: the backend would ask for your contact details (reason: domain_not_allowed)."
	tests := []struct {
		name        string
		host        string
		page        string
		screenshot  string
		wantStatus  string
		wantNote    string
		wantContact map[string]string // rows of the contact panel, but the assertion
		wantReplies []string
	}{
		{
			name:        "whitelisted origin",
			host:        "shop.localhost",
			page:        "/",
			screenshot:  "shop-index.png",
			wantStatus:  "verified",
			wantNote:    "Verified by the shop's identity API.",
			wantContact: demoContact,
			wantReplies: []string{demoGreetingKnown, demoReplyKnown},
		},
		{
			name:        "origin not on the whitelist",
			host:        "evil.localhost",
			page:        "/",
			screenshot:  "evil-index.png",
			wantStatus:  "fallback",
			wantNote:    anonymous,
			wantReplies: []string{demoGreetingAnonymous, demoReplyAnonymous},
		},
		{
			name:        "forged contact headers from the whitelisted origin",
			host:        "shop.localhost",
			page:        "/forged.html",
			screenshot:  "shop-forged.png",
			wantStatus:  "verified",
			wantNote:    "Verified by the shop's identity API.",
			wantContact: demoContact,
			wantReplies: []string{demoGreetingKnown, demoReplyKnown},
		},
		{
			name:        "forged contact headers from another origin",
			host:        "evil.localhost",
			page:        "/forged.html",
			screenshot:  "evil-forged.png",
			wantStatus:  "fallback",
			wantNote:    anonymous,
			wantReplies: []string{demoGreetingAnonymous, demoReplyAnonymous},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := demo.pageURL(tt.host, tt.page)
			got, shot := chatOnDemoPage(t, browser, url, message)

			file := filepath.Join(t.ArtifactDir(), tt.screenshot)
			if err := os.WriteFile(file, shot, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot of %s: %s", url, file)

			if got.Status != tt.wantStatus || got.Note != tt.wantNote {
				t.Errorf("%s: the contact panel shows %s %q, want %s %q", url, got.Status, got.Note, tt.wantStatus, tt.wantNote)
			}
			for field, want := range tt.wantContact {
				if got.Contact[field] != want {
					t.Errorf("%s: contact %s = %q, want %q", url, field, got.Contact[field], want)
				}
			}
			for field, value := range got.Contact {
				if _, ok := tt.wantContact[field]; !ok && field != "assertion" {
					t.Errorf("%s: unexpected contact %s = %q", url, field, value)
				}
				if strings.Contains(value, "Admin") {
					t.Errorf("%s: the forged contact reached the backend: %s = %q", url, field, value)
				}
			}
			if assertion := got.Contact["assertion"]; strings.HasPrefix(assertion, "signed, eyJ") != (tt.wantStatus == "verified") {
				t.Errorf("%s: assertion %q, want one only when verified", url, assertion)
			}
			wantMessages := []chatMessage{
				{"agent", tt.wantReplies[0]}, {"visitor", message}, {"agent", tt.wantReplies[1]},
			}
			if len(got.Messages) != len(wantMessages) {
				t.Fatalf("%s: the chat shows %q, want %q", url, got.Messages, wantMessages)
			}
			for i, want := range wantMessages {
				if got.Messages[i] != want {
					t.Errorf("%s: message %d is %q, want %q", url, i, got.Messages[i], want)
				}
			}

			// The widget's requests carry headers of their own, so the browser asked the
			// gateway first; the CORS snippet of Caddyfile.example answered.
			origin := "http://" + tt.host + ":" + demo.ports[pageAddr]
			waitLog(t, demo.accessLog, "preflight answered for "+origin, func(e logEntry) bool {
				return e.Request.Method == "OPTIONS" && e.Request.URI == "/chat" && e.Status == 204 &&
					len(e.Request.Headers["Origin"]) == 1 && e.Request.Headers["Origin"][0] == origin
			})
			demo.assertNoToken(t)
		})
	}
}

type chatMessage struct {
	From string `json:"from"`
	Text string `json:"text"`
}

// demoChat is what the demo page's chat and contact panel show.
type demoChat struct {
	Status   string            `json:"status"`
	Note     string            `json:"note"`
	Contact  map[string]string `json:"contact"`
	Messages []chatMessage     `json:"messages"`
}

const readDemoChat = `(() => {
	const panel = document.querySelector(".contact-panel");
	const contact = {};
	for (const row of document.querySelectorAll(".contact-fields tr")) {
		contact[row.dataset.field] = row.cells[1].textContent;
	}
	const messages = [...document.querySelectorAll(".chat-message")].map((m) => ({from: m.dataset.from, text: m.textContent}));
	return {
		status: panel ? panel.dataset.status : "",
		note: panel ? panel.querySelector(".contact-note").textContent : "",
		contact,
		messages,
	};
})()`

// chatOnDemoPage opens url in a new tab, waits for the chat's greeting, sends a message,
// waits for the reply, and returns what the page shows and a PNG screenshot of it.
func chatOnDemoPage(t *testing.T, browser context.Context, url, message string) (demoChat, []byte) {
	t.Helper()
	tab := newTab(t, browser)
	ctx := withDeadline(t, tab, 30*time.Second)
	// Each wait ends on an error too, which the widget shows in the contact panel.
	const failed = `, .contact-panel[data-status="error"]`
	steps := []struct {
		what    string
		actions []chromedp.Action[chromedp.Void]
	}{
		{"greeting", []chromedp.Action[chromedp.Void]{
			chromedp.Navigate(url),
			chromedp.WaitVisible(chromedp.CSS(`.chat-input input:enabled` + failed)),
		}},
		{"reply", []chromedp.Action[chromedp.Void]{
			chromedp.SendKeys(chromedp.CSS(`.chat-input input`), message),
			chromedp.Click(chromedp.CSS(`.chat-input button`)),
			// The greeting, the visitor's message, the reply.
			chromedp.WaitVisible(chromedp.CSS(`.chat-message:nth-child(3)` + failed)),
		}},
	}
	for _, step := range steps {
		err := chromedp.Do(ctx, step.actions...)
		state, readErr := chromedp.Run(withDeadline(t, tab, 5*time.Second), chromedp.Evaluate[demoChat](readDemoChat))
		if err == nil && readErr == nil && state.Status != "error" {
			continue
		}
		t.Fatalf("%s: no %s from the chat (%v, %v); the page shows %+v", url, step.what, err, readErr, state)
	}
	state, err := chromedp.Run(ctx, chromedp.Evaluate[demoChat](readDemoChat))
	if err != nil {
		t.Fatalf("%s: reading the chat: %v", url, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("%s: screenshot: %v", url, err)
	}
	return state, shot
}
