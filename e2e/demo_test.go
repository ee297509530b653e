package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// What the demo's chat backend (demo/server) answers: a greeting when the chat opens, a
// reply to a message.
const (
	demoGreetingAnonymous = "Hello! Before we start, may we have your name and email address?"
	demoReplyAnonymous    = "Thank you. So that an agent can answer, please leave your name and email address first."
)

func demoGreetingNew(name string) string {
	return "Hello " + name + "! We already know who you are, so there is no need to introduce yourself. How can we help?"
}

func demoGreetingBack(name string) string {
	return "Welcome back, " + name + "! Your earlier messages are above. How can we help?"
}

func demoReplyKnown(name string) string {
	return "Thank you, " + name + ". An agent can see your contact details and will answer here shortly."
}

// What the Contact Details panel says of a visit.
const (
	noteCreated   = "New contact: created from the identity API's answer."
	noteUpdated   = "Welcome back: details updated from the identity API's answer."
	noteUnchanged = "Welcome back: details unchanged."
)

// demoContactID is data.id of the contact the demo's identity API answers for the demo
// token.
const demoContactID = "2"

// demoContact is that contact, as the Contact Details panel shows it.
var demoContact = map[string]string{
	"identified-by": "id = 2",
	"name":          "Nguyễn Văn B",
	"email":         "b@example.com",
	"phone":         "+84 0912345678",
	"label":         "VIP",
	"metadata":      "order_id: ORD-5578XZ, order_quantity: 3",
}

func TestDemoPage(t *testing.T) {
	browser := startBrowser(t)
	demo := startExample(t, exampleOptions{})

	const message = "Where is my order?"
	const anonymous = "Anonymous visitor: the backend asks for a name and an email (reason: domain_not_allowed)."
	name := demoContact["name"]
	// The cases run in order on one demo, whose backend remembers the contact.
	tests := []struct {
		name        string
		host        string
		page        string
		screenshot  string
		wantStatus  string
		wantNote    string
		wantContact map[string]string // rows of the contact panel
		wantHistory []chatMessage
		wantReplies []string
	}{
		{
			name:        "whitelisted origin",
			host:        "shop.localhost",
			page:        "/",
			screenshot:  "shop-index.png",
			wantStatus:  "verified",
			wantNote:    noteCreated,
			wantContact: demoContact,
			wantReplies: []string{demoGreetingNew(name), demoReplyKnown(name)},
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
			wantNote:    noteUnchanged,
			wantContact: demoContact,
			wantHistory: []chatMessage{{"visitor", message}, {"agent", demoReplyKnown(name)}},
			wantReplies: []string{demoGreetingBack(name), demoReplyKnown(name)},
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
			tab := openChat(t, browser, url)
			got := sendMessage(t, tab, message)
			saveScreenshot(t, tab, tt.screenshot)

			if got.Status != tt.wantStatus || got.Note != tt.wantNote {
				t.Errorf("%s: the contact panel shows %s %q, want %s %q", url, got.Status, got.Note, tt.wantStatus, tt.wantNote)
			}
			assertRows(t, got, tt.wantContact)
			for field, value := range got.Contact {
				if strings.Contains(value, "Admin") {
					t.Errorf("%s: the forged contact reached the backend: %s = %q", url, field, value)
				}
			}
			want := append(tt.wantHistory, chatMessage{"agent", tt.wantReplies[0]}, chatMessage{"visitor", message}, chatMessage{"agent", tt.wantReplies[1]})
			assertMessages(t, got, want)

			// The widget's requests carry headers of their own, so the browser asked the
			// gateway first; the CORS snippet of Caddyfile.example answered.
			origin := "http://" + tt.host + ":" + demo.ports[pageAddr]
			waitLog(t, demo.accessLog, "preflight answered for "+origin, func(e logEntry) bool {
				return e.Request.Method == "OPTIONS" && e.Request.URI == "/chat" && e.Status == 204 &&
					len(e.Request.Headers["Origin"]) == 1 && e.Request.Headers["Origin"][0] == origin
			})
			demo.assertNoToken(t)
			// The fields the widget claims (X-User-Email) are personal data too: the
			// filter takes them out of the access log.
			if strings.Contains(readFile(demo.accessLog), demoContact["email"]) {
				t.Errorf("the access log has the visitor's email %s", demoContact["email"])
			}
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
	Outcome  string            `json:"outcome"`
	Note     string            `json:"note"`
	Contact  map[string]string `json:"contact"`
	Messages []chatMessage     `json:"messages"`
	// Text is all the text of the page.
	Text string `json:"text"`
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
		outcome: panel ? (panel.dataset.outcome || "") : "",
		note: panel ? panel.querySelector(".contact-note").textContent : "",
		contact,
		messages,
		text: document.body.innerText,
	};
})()`

// Each wait ends on an error too, which the widget shows in the contact panel.
const chatFailed = `, .contact-panel[data-status="error"]`

// openChat opens url in a new tab and waits until the chat has greeted the visitor.
func openChat(t *testing.T, browser context.Context, url string) context.Context {
	t.Helper()
	tab := newTab(t, browser)
	chatStep(t, tab, url+": the greeting",
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`.chat-input input:enabled`+chatFailed)),
	)
	return tab
}

// sendMessage sends a message in the chat, waits for the agent's reply and returns what
// the page shows.
func sendMessage(t *testing.T, tab context.Context, message string) demoChat {
	t.Helper()
	before := readChat(t, tab)
	chatStep(t, tab, "the reply to "+message,
		chromedp.SendKeys(chromedp.CSS(`.chat-input input`), message),
		chromedp.Click(chromedp.CSS(`.chat-input button`)),
		// The visitor's message, then the reply.
		chromedp.WaitVisible(chromedp.CSS(`.chat-message:nth-child(`+strconv.Itoa(len(before.Messages)+2)+`)`+chatFailed)),
	)
	return readChat(t, tab)
}

// sendDetails fills in the Collect Information form and waits for the backend's answer.
func sendDetails(t *testing.T, tab context.Context, name, email string) demoChat {
	t.Helper()
	chatStep(t, tab, "the answer to the contact form",
		chromedp.WaitVisible(chromedp.CSS(`.collect-info`)),
		chromedp.SendKeys(chromedp.CSS(`.collect-info input[name="name"]`), name),
		chromedp.SendKeys(chromedp.CSS(`.collect-info input[name="email"]`), email),
		chromedp.Click(chromedp.CSS(`.collect-info button`)),
		chromedp.WaitVisible(chromedp.CSS(`.contact-fields tr[data-field="email"]`+chatFailed)),
	)
	return readChat(t, tab)
}

// chatStep runs actions in a tab and fails the test, with what the page shows, if they
// fail or the widget shows an error.
func chatStep(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	err := chromedp.Do(withDeadline(t, tab, 30*time.Second), actions...)
	state, readErr := chromedp.Run(withDeadline(t, tab, 5*time.Second), chromedp.Evaluate[demoChat](readDemoChat))
	if err != nil || readErr != nil || state.Status == "error" {
		t.Fatalf("no %s (%v, %v); the page shows %+v", what, err, readErr, state)
	}
}

func readChat(t *testing.T, tab context.Context) demoChat {
	t.Helper()
	state, err := chromedp.Run(withDeadline(t, tab, 5*time.Second), chromedp.Evaluate[demoChat](readDemoChat))
	if err != nil {
		t.Fatalf("reading the chat: %v", err)
	}
	return state
}

// saveScreenshot saves a PNG of the whole page as a test artifact.
func saveScreenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(withDeadline(t, tab, 10*time.Second), chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	file := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", file)
}

// assertRows checks the rows of the contact panel: exactly want.
func assertRows(t *testing.T, got demoChat, want map[string]string) {
	t.Helper()
	for field, value := range want {
		if got.Contact[field] != value {
			t.Errorf("contact %s = %q, want %q", field, got.Contact[field], value)
		}
	}
	for field, value := range got.Contact {
		if _, ok := want[field]; !ok {
			t.Errorf("unexpected contact %s = %q", field, value)
		}
	}
}

// assertMessages checks the messages of the chat: exactly want, in order.
func assertMessages(t *testing.T, got demoChat, want []chatMessage) {
	t.Helper()
	if len(got.Messages) != len(want) {
		t.Fatalf("the chat shows %q, want %q", got.Messages, want)
	}
	for i, w := range want {
		if got.Messages[i] != w {
			t.Errorf("message %d is %q, want %q", i, got.Messages[i], w)
		}
	}
}
