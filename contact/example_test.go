package contact_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

// A backend reads the contact headers that the gateway set.
func ExampleFromHeaders() {
	r := httptest.NewRequest(http.MethodPost, "/chat", nil)
	r.Header.Set("X-Contact-Id", "2")
	r.Header.Set("X-Contact-Name", "Nguy%E1%BB%85n%20V%C4%83n%20B")
	r.Header.Set("X-Contact-Metadata", `{"order_id":"ORD-5578XZ"}`)
	r.Header.Set("X-Contact-Identify-By", "id")

	c, err := contact.FromHeaders(r.Header, contact.DefaultPrefix)
	if err != nil {
		fmt.Println("anonymous visitor:", err)
		return
	}
	fmt.Println(c.ID, c.Name, c.Metadata["order_id"])
	// Output: 2 Nguyễn Văn B ORD-5578XZ
}

// A backend verifies the signed assertion; a valid one puts the contact in the
// request's context.
func ExampleMiddleware() {
	key := []byte("the gateway's sign_key, 32+ bytes")

	// What the gateway does for a verified visitor of bot "shop".
	signer, _ := contact.NewHMACSigner(key)
	assertion, _ := signer.Sign("shop", "2", "id", []byte(`{"id":"2","name":"Nguyễn Văn B"}`), time.Now(), time.Minute)

	// The backend.
	verifier, _ := contact.NewHMACVerifier(key)
	botID := func(r *http.Request) string { return r.Header.Get("X-Bot-Id") }
	chat := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := contact.FromContext(r.Context()); ok {
			fmt.Println("verified:", c.Name)
		} else {
			fmt.Println("anonymous")
		}
	})
	handler := contact.Middleware(verifier, contact.DefaultPrefix, botID)(chat)

	r := httptest.NewRequest(http.MethodPost, "/chat", nil)
	r.Header.Set("X-Bot-Id", "shop")
	r.Header.Set("X-Contact-Assertion", assertion)
	handler.ServeHTTP(httptest.NewRecorder(), r)

	r = httptest.NewRequest(http.MethodPost, "/chat", nil)
	r.Header.Set("X-Bot-Id", "shop")
	r.Header.Set("X-Contact-Id", "2") // not signed: not trusted
	handler.ServeHTTP(httptest.NewRecorder(), r)
	// Output:
	// verified: Nguyễn Văn B
	// anonymous
}

// Verify reports why an assertion is refused.
func ExampleVerifier_Verify() {
	key := []byte("the gateway's sign_key, 32+ bytes")
	signer, _ := contact.NewHMACSigner(key)
	issued := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	assertion, _ := signer.Sign("shop", "2", "id", []byte(`{"id":"2"}`), issued, time.Minute)

	verifier, _ := contact.NewHMACVerifier(key, contact.WithClock(func() time.Time { return issued.Add(10 * time.Second) }))
	claims, err := verifier.Verify(assertion, "shop")
	fmt.Println(claims.Subject, err)
	_, err = verifier.Verify(assertion, "another-bot")
	fmt.Println(err == nil)
	// Output:
	// 2 <nil>
	// false
}
