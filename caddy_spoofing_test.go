package customauth

// Integration tests of the anti-spoofing rules that only a real reverse_proxy can show:
// trailers, which Go's server fills in after the handler has run, and the Connection
// header, which makes the proxy drop the headers it lists.

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/custom-auth/custom_auth/contact"
)

// chunkedRequest is a widget POST whose body has no known length, so that it is sent
// chunked, followed by forged contact trailers and a harmless checksum trailer.
func chunkedRequest(token string) *http.Request {
	req := gatewayRequest("/chat", token, "https://shop.example.com")
	req.Method = http.MethodPost
	// A MultiReader hides the length from net/http: the body goes out chunked.
	req.Body = io.NopCloser(io.MultiReader(strings.NewReader("hello "), strings.NewReader("world")))
	req.ContentLength = -1
	req.TransferEncoding = []string{"chunked"}
	req.Trailer = http.Header{
		"X-Contact-Id":   {"999"},
		"X_Contact_Name": {"Mallory"},
		"X-Checksum":     {"sha256=abc"},
	}
	return req
}

func TestIntegrationSpoofedTrailers(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	tester := startCaddy(t, api, be)

	for _, tc := range []struct {
		name, token, status, id string
	}{
		{"verified", "alice-token", "verified", "2"},
		{"fallback", "wrong-token", "fallback", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tester.AssertResponse(chunkedRequest(tc.token), http.StatusOK, "backend")
			got, body := be.received(t)
			if s := got.Header.Get("X-Custom-Auth-Status"); s != tc.status {
				t.Fatalf("outcome %q, want %q", s, tc.status)
			}
			if body != "hello world" {
				t.Errorf("body %q", body)
			}
			for name, values := range got.Trailer {
				if contact.HasPrefix(name, contact.DefaultPrefix) {
					t.Errorf("trailer %s: %q reached the backend", name, values)
				}
			}
			if v := got.Trailer.Get("X-Checksum"); v != "sha256=abc" {
				t.Errorf("X-Checksum trailer = %q; trailers %v", v, got.Trailer)
			}
			if ids := got.Header.Values("X-Contact-Id"); tc.id == "" && len(ids) != 0 || tc.id != "" && (len(ids) != 1 || ids[0] != tc.id) {
				t.Errorf("X-Contact-Id = %q, want %q", ids, tc.id)
			}
		})
	}
}

func TestIntegrationSpoofedConnectionHeader(t *testing.T) {
	api := newIdentityAPI(t)
	be := newBackend(t)
	tester := startCaddy(t, api, be)

	req := gatewayRequest("/chat", "alice-token", "https://shop.example.com")
	// Asks every proxy on the way to drop, as hop-by-hop, the headers the gateway sets.
	req.Header.Set("Connection", "X-Contact-Id, X-Contact-Identify-By, keep-alive")
	tester.AssertResponse(req, http.StatusOK, "backend")
	got, _ := be.received(t)
	for name, want := range map[string]string{"X-Contact-Id": "2", "X-Contact-Identify-By": "id"} {
		if values := got.Header.Values(name); len(values) != 1 || values[0] != want {
			t.Errorf("%s = %q, want %q", name, values, want)
		}
	}
	c, err := contact.FromHeaders(got.Header, contact.DefaultPrefix)
	if err != nil || c.Name != "Nguyễn Văn B" {
		t.Errorf("contact %+v, %v", c, err)
	}
}
