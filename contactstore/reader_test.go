package contactstore

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

func TestReader(t *testing.T) {
	key := []byte("demo-signing-key-0123456789abcdef")
	signer, err := contact.NewHMACSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now().Add(-10 * time.Second).Truncate(time.Second)
	assertion, err := signer.Sign("shop", "2", "id", []byte(`{"id":"2","name":"Nguyễn Văn B","metadata":{"order_id":"ORD-1"}}`), issued, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := contact.NewHMACVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	withVerifier := &Reader{Verifier: verifier}
	headersOnly := &Reader{Now: func() time.Time { return clock }}

	tests := []struct {
		name     string
		reader   *Reader
		headers  map[string]string
		wantName string
		wantAt   time.Time
		wantErr  error
	}{
		{"assertion", withVerifier, map[string]string{"X-Bot-Id": "shop", "X-Contact-Assertion": assertion}, "Nguyễn Văn B", issued, nil},
		{"assertion for another bot", withVerifier, map[string]string{"X-Bot-Id": "other", "X-Contact-Assertion": assertion}, "", time.Time{}, contact.ErrAudience},
		{"unsigned headers with a verifier", withVerifier, map[string]string{"X-Bot-Id": "shop", "X-Contact-Id": "1", "X-Contact-Identify-By": "id"}, "", time.Time{}, contact.ErrNoContact},
		{"headers", headersOnly, map[string]string{"X-Bot-Id": "shop", "X-Contact-Id": "2", "X-Contact-Name": "B", "X-Contact-Identify-By": "id"}, "B", clock, nil},
		{"anonymous", headersOnly, map[string]string{"X-Bot-Id": "shop"}, "", time.Time{}, contact.ErrNoContact},
		{"no bot", headersOnly, map[string]string{"X-Contact-Id": "2", "X-Contact-Identify-By": "id"}, "", time.Time{}, contact.ErrNoContact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/chat", nil)
			for name, value := range tt.headers {
				r.Header.Set(name, value)
			}
			seen, err := tt.reader.Read(r)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if seen.Bot != "shop" || seen.Contact.Name != tt.wantName || !seen.At.Equal(tt.wantAt) {
				t.Errorf("read %s %q at %v, want shop %q at %v", seen.Bot, seen.Contact.Name, seen.At, tt.wantName, tt.wantAt)
			}
		})
	}
}
