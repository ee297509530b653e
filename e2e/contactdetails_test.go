package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// identityAPI is an identity API whose answer for the demo token the test changes.
type identityAPI struct {
	server *httptest.Server
	mu     sync.Mutex
	name   string
	calls  int
}

func startIdentityAPI(t *testing.T, name string) *identityAPI {
	t.Helper()
	api := &identityAPI{name: name}
	api.server = httptest.NewServer(http.HandlerFunc(api.serve)) // on 127.0.0.1
	t.Cleanup(api.server.Close)
	return api
}

func (api *identityAPI) setName(name string) {
	api.mu.Lock()
	defer api.mu.Unlock()
	api.name = name
}

func (api *identityAPI) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.AccessToken != demoToken {
		http.Error(w, `{"status": false}`, http.StatusUnauthorized)
		return
	}
	api.mu.Lock()
	api.calls++
	name := api.name
	api.mu.Unlock()
	// Not cached by the gateway, so that each visit asks again.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"status": true, "data": map[string]any{
		"id": "2", "name": name, "email": "b@example.com", "phone_number": "0912345678",
		"country_code": "+84", "label": "VIP",
		"metadata": map[string]any{"order_id": "ORD-5578XZ", "order_quantity": 3},
	}})
}

// TestContactDetails follows one customer over visits through the real gateway and the
// demo's backend: a new contact, then, after the identity API changed the name, an
// updated one that finds its earlier messages; then an anonymous visitor, on a page
// that is not on the whitelist, who types that customer's email and sees nothing of
// theirs; then the customer again, unchanged, with their history as it was.
func TestContactDetails(t *testing.T) {
	browser := startBrowser(t)
	api := startIdentityAPI(t, "Nguyễn Văn B")
	demo := startExample(t, exampleOptions{identityAPI: api.server.URL + "/ca"})
	shop := demo.pageURL("shop.localhost", "/")
	const question = "Where is order ORD-5578XZ?"
	rows := func(name string) map[string]string {
		return map[string]string{
			"identified-by": "id = 2", "name": name, "email": "b@example.com", "phone": "+84 0912345678",
			"label": "VIP", "metadata": "order_id: ORD-5578XZ, order_quantity: 3",
		}
	}
	history := []chatMessage{{"visitor", question}, {"agent", demoReplyKnown("Nguyễn Văn B")}}

	// First visit: a new contact.
	tab := openChat(t, browser, shop)
	got := sendMessage(t, tab, question)
	saveScreenshot(t, tab, "1-new-contact.png")
	if got.Status != "verified" || got.Outcome != "created" || got.Note != noteCreated {
		t.Errorf("first visit: %s %s %q, want verified created %q", got.Status, got.Outcome, got.Note, noteCreated)
	}
	assertRows(t, got, rows("Nguyễn Văn B"))
	assertMessages(t, got, append([]chatMessage{{"agent", demoGreetingNew("Nguyễn Văn B")}}, history...))

	// Second visit, after the identity API changed the name: updated, history kept.
	api.setName("Nguyễn Văn C")
	tab = openChat(t, browser, shop)
	got = readChat(t, tab)
	saveScreenshot(t, tab, "2-welcome-back-updated.png")
	if got.Status != "verified" || got.Outcome != "updated" || got.Note != noteUpdated {
		t.Errorf("second visit: %s %s %q, want verified updated %q", got.Status, got.Outcome, got.Note, noteUpdated)
	}
	assertRows(t, got, rows("Nguyễn Văn C"))
	assertMessages(t, got, append(history, chatMessage{"agent", demoGreetingBack("Nguyễn Văn C")}))

	// An anonymous visitor on a page off the whitelist types the customer's email.
	tab = openChat(t, browser, demo.pageURL("evil.localhost", "/"))
	sendDetails(t, tab, "Mallory", "B@Example.com")
	got = sendMessage(t, tab, "What did I order?")
	saveScreenshot(t, tab, "3-anonymous-types-their-email.png")
	if got.Status != "fallback" || got.Outcome != "" || !strings.HasPrefix(got.Note, "Unverified lead:") {
		t.Errorf("anonymous visitor: %s %s %q, want an unverified lead", got.Status, got.Outcome, got.Note)
	}
	assertRows(t, got, map[string]string{"name": "Mallory", "email": "B@Example.com"})
	for _, secret := range []string{"Nguyễn", "ORD-5578XZ", "0912345678", "VIP", question} {
		if strings.Contains(got.Text, secret) {
			t.Errorf("the anonymous visitor sees %q of the customer's data:\n%s", secret, got.Text)
		}
	}

	// The customer again: unchanged, their history without the anonymous messages.
	tab = openChat(t, browser, shop)
	got = readChat(t, tab)
	saveScreenshot(t, tab, "4-welcome-back-unchanged.png")
	if got.Outcome != "unchanged" || got.Note != noteUnchanged {
		t.Errorf("third visit: %s %q, want unchanged %q", got.Outcome, got.Note, noteUnchanged)
	}
	assertRows(t, got, rows("Nguyễn Văn C"))
	assertMessages(t, got, append(history, chatMessage{"agent", demoGreetingBack("Nguyễn Văn C")}))

	api.mu.Lock()
	defer api.mu.Unlock()
	if api.calls < 3 {
		t.Errorf("the identity API was asked %d times, want once for each verified visit (3)", api.calls)
	}
}
