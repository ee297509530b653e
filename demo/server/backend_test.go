package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/contact"
	"github.com/custom-auth/custom_auth/contactstore"
)

// TestBackend drives the demo's chat backend as the gateway would: assertions signed
// with the demo's key for a verified visitor, none for an anonymous one.
func TestBackend(t *testing.T) {
	store, err := contactstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "contacts.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	verifier, err := contact.NewHMACVerifier([]byte(demoSignKey))
	if err != nil {
		t.Fatal(err)
	}
	backend := &chatBackend{store: store, reader: &contactstore.Reader{Verifier: verifier}, log: slog.New(slog.DiscardHandler)}
	server := httptest.NewServer(backend.routes())
	t.Cleanup(server.Close)
	signer, err := contact.NewHMACSigner([]byte(demoSignKey))
	if err != nil {
		t.Fatal(err)
	}
	assertion, err := signer.Sign("demo-bot", "2", "id", []byte(`{"id":"2","name":"B","email":"b@example.com"}`), time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	verified := map[string]string{"X-Contact-Assertion": assertion}
	forged := map[string]string{"X-Contact-Id": "2", "X-Contact-Identify-By": "id", "X-Visitor-Id": "v-1"}
	anonymous := map[string]string{"X-Visitor-Id": "v-1"}

	steps := []struct {
		name       string
		method     string
		path       string
		headers    map[string]string
		body       string
		wantStatus int
		want       []string // in the answer
		wantNot    []string // not in the answer
	}{
		{"first verified visit", "GET", "/chat", verified, "", 200, []string{`"outcome":"created"`, `"name":"B"`}, nil},
		{"verified message", "POST", "/chat", verified, `{"text":"my secret order"}`, 200, []string{"Thank you, B."}, []string{`"outcome"`}},
		{"returning visit", "GET", "/chat", verified, "", 200, []string{`"outcome":"unchanged"`, "my secret order"}, nil},
		{"verified contact form", "POST", "/chat/lead", verified, `{"name":"B","email":"b@example.com"}`, 409, nil, nil},
		{"unsigned contact headers", "GET", "/chat", forged, "", 200, []string{`"status":"fallback"`}, []string{`"contact"`, "my secret order"}},
		{"anonymous types the email", "POST", "/chat/lead", anonymous, `{"name":"Mallory","email":"B@EXAMPLE.COM"}`, 200, []string{`"lead":{"name":"Mallory","email":"B@EXAMPLE.COM"}`}, []string{`"contact"`, `"name":"B"`}},
		{"anonymous reopens", "GET", "/chat", anonymous, "", 200, []string{"Hello again, Mallory."}, []string{`"contact"`, "my secret order"}},
		{"anonymous without a visitor id", "POST", "/chat", nil, `{"text":"hi"}`, 400, nil, nil},
		{"a lead too long", "POST", "/chat/lead", anonymous, `{"name":"` + strings.Repeat("x", 201) + `","email":"a@b"}`, 400, nil, nil},
	}
	for _, step := range steps {
		req, err := http.NewRequest(step.method, server.URL+step.path, strings.NewReader(step.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Bot-Id", "demo-bot")
		for name, value := range step.headers {
			req.Header.Set(name, value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != step.wantStatus {
			t.Errorf("%s: status %d, want %d: %s", step.name, resp.StatusCode, step.wantStatus, body)
			continue
		}
		if step.wantStatus == 200 && !json.Valid(body) {
			t.Errorf("%s: not JSON: %s", step.name, body)
		}
		for _, want := range step.want {
			if !strings.Contains(string(body), want) {
				t.Errorf("%s: the answer has no %s: %s", step.name, want, body)
			}
		}
		for _, not := range step.wantNot {
			if strings.Contains(string(body), not) {
				t.Errorf("%s: the answer has %s: %s", step.name, not, body)
			}
		}
	}
}
