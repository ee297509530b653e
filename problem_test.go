package customauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// checkProblem asserts that a 401 of on_fail reject is the RFC 9457 problem for a
// reason, not to be stored, and holds no token and no contact value.
func checkProblem(t testing.TB, header http.Header, body []byte, reason string) {
	t.Helper()
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	if cc := header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	want := `{"type":"about:blank","title":"Unauthorized","status":401,"reason":"` + reason + `"}`
	if string(body) != want {
		t.Errorf("body = %s, want %s", body, want)
	}
	for _, secret := range []string{"-token", "Nguy", "0912345678"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("body holds %q: %s", secret, body)
		}
	}
}

func TestProblemBodyPerReason(t *testing.T) {
	for _, r := range []reason{reasonDomainNotAllowed, reasonMissingToken, reasonRejected, reasonError, reasonIdentityMismatch} {
		t.Run(string(r), func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := writeProblem(rec, r); err != nil {
				t.Fatal(err)
			}
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("code %d", rec.Code)
			}
			checkProblem(t, rec.Header(), rec.Body.Bytes(), string(r))
		})
	}
}
