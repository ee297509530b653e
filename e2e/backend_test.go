package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/custom-auth/custom_auth/contact"
)

// The sign_key of Caddyfile.example, with which the backend verifies the assertion.
const demoSignKey = "demo-signing-key-0123456789abcdef"

// chatBackend is a chat backend behind the gateway, as the transport tests need one: a
// WebSocket chat at /ws, an event stream at /events, plain requests at /chat, and at
// /broken a backend that fails. It reads the contact the way a Go backend does (the
// contact package, the assertion verified with the demo's sign_key) and keeps every
// request it received, so that a test can check what the gateway passed on.
type chatBackend struct {
	server   *httptest.Server
	verifier *contact.Verifier

	mu       sync.Mutex
	received []receivedRequest
}

// receivedRequest is a request as the backend received it.
type receivedRequest struct {
	Path     string
	RawQuery string
	Header   http.Header
	// Contact is the contact of a valid assertion; nil when the request is anonymous.
	Contact *contact.Contact
}

// backendAnswer is what the backend tells the widget: its reply, the gateway's outcome
// and the verified contact.
type backendAnswer struct {
	Reply   string           `json:"reply"`
	Status  string           `json:"status"`
	Reason  string           `json:"reason"`
	Contact *contact.Contact `json:"contact"`
}

// The backend's replies.
const (
	replyKnown     = "Hello %s, how can we help?"
	replyAnonymous = "Hello, may we have your name and email address?"
	replyMessage   = "You wrote: %s"
)

func startChatBackend(t *testing.T) *chatBackend {
	t.Helper()
	verifier, err := contact.NewHMACVerifier([]byte(demoSignKey))
	if err != nil {
		t.Fatal(err)
	}
	b := &chatBackend{verifier: verifier}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", b.serveWebSocket)
	mux.HandleFunc("/events", b.serveEvents)
	mux.HandleFunc("/chat", b.serveChat)
	mux.HandleFunc("/broken", b.serveBroken)
	b.server = httptest.NewServer(mux) // on 127.0.0.1
	t.Cleanup(b.server.Close)
	return b
}

// addr is the backend's host:port, for the gateway's reverse_proxy.
func (b *chatBackend) addr() string {
	return strings.TrimPrefix(b.server.URL, "http://")
}

// receive records a request and returns its answer to the widget.
func (b *chatBackend) receive(w http.ResponseWriter, r *http.Request) backendAnswer {
	// CORS of the backend's own, as many have; the gateway's must replace it, as the
	// browser refuses an answer with two.
	w.Header().Set("Access-Control-Allow-Origin", "*")

	got := receivedRequest{Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()}
	botID := r.Header.Get("X-Bot-Id")
	if botID == "" {
		botID = r.URL.Query().Get("bot")
	}
	if claims, err := b.verifier.Verify(r.Header.Get(contact.AssertionHeader(contact.DefaultPrefix)), botID); err == nil {
		var data contact.Data
		if err := json.Unmarshal(claims.Data, &data); err == nil {
			got.Contact, _ = data.Contact(claims.IdentifyBy)
		}
	}
	b.mu.Lock()
	b.received = append(b.received, got)
	b.mu.Unlock()

	answer := backendAnswer{
		Reply:   replyAnonymous,
		Status:  r.Header.Get("X-Custom-Auth-Status"),
		Reason:  r.Header.Get("X-Custom-Auth-Reason"),
		Contact: got.Contact,
	}
	if got.Contact != nil {
		answer.Reply = fmt.Sprintf(replyKnown, got.Contact.Name)
	}
	return answer
}

// requests returns the requests the backend received on path.
func (b *chatBackend) requests(path string) []receivedRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	var found []receivedRequest
	for _, r := range b.received {
		if r.Path == path {
			found = append(found, r)
		}
	}
	return found
}

// only returns the one request the backend received on path.
func (b *chatBackend) only(t *testing.T, path string) receivedRequest {
	t.Helper()
	found := b.requests(path)
	if len(found) != 1 {
		t.Fatalf("the backend received %d requests on %s, want 1: %+v", len(found), path, found)
	}
	return found[0]
}

// serveWebSocket greets the visitor with what the backend knows of them, then answers
// each message, until the widget closes the connection.
func (b *chatBackend) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	answer := b.receive(w, r)
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// The demo pages' origins. The chat is open to both; who is identified, the
		// gateway's whitelist decides.
		OriginPatterns: []string{"shop.localhost:*", "evil.localhost:*"},
	})
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := r.Context()
	if err := wsjson.Write(ctx, conn, answer); err != nil {
		return
	}
	for {
		var message struct {
			Text string `json:"text"`
		}
		if err := wsjson.Read(ctx, conn, &message); err != nil {
			return // closed by the widget, or by the gateway when it stops
		}
		answer.Reply = fmt.Sprintf(replyMessage, message.Text)
		if err := wsjson.Write(ctx, conn, answer); err != nil {
			return
		}
	}
}

// serveEvents sends one event and keeps the stream open until the widget closes it, as
// a chat's stream of messages would.
func (b *chatBackend) serveEvents(w http.ResponseWriter, r *http.Request) {
	answer := b.receive(w, r)
	event, err := json.Marshal(answer)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "data: %s\n\n", event)
	if err := http.NewResponseController(w).Flush(); err != nil {
		return
	}
	<-r.Context().Done()
}

// serveChat answers a plain request: a POST is a message.
func (b *chatBackend) serveChat(w http.ResponseWriter, r *http.Request) {
	answer := b.receive(w, r)
	if r.Method == http.MethodPost {
		var message struct {
			Text string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&message); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer.Reply = fmt.Sprintf(replyMessage, message.Text)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

// serveBroken drops the connection without an answer, so that the gateway fails with
// 502 and Caddy logs an error with the request.
func (b *chatBackend) serveBroken(w http.ResponseWriter, r *http.Request) {
	b.receive(w, r)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot drop the connection: "+err.Error(), http.StatusInternalServerError)
		return
	}
	conn.Close()
}
