package customauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCallAPI: every API call sends the configured headers and asks for JSON, never
// names its URL (which may carry credentials) in an error, and refuses an answer over
// its size.
func TestCallAPI(t *testing.T) {
	var got http.Header
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Write([]byte(strings.Repeat("x", len(r.URL.Query().Get("size")))))
	}))
	defer api.Close()
	ctx := context.Background()
	headers := http.Header{"X-Api-Key": {"k"}}

	answer, err := callAPI(ctx, api.Client(), http.MethodPost, api.URL+"?size=aaaa", headers, []byte(`{}`), 4)
	if err != nil || answer.code != 200 || string(answer.body) != "xxxx" {
		t.Fatalf("%d %q %v", answer.code, answer.body, err)
	}
	if got.Get("X-Api-Key") != "k" || got.Get("Accept") != "application/json" || got.Get("Content-Type") != "application/json" {
		t.Errorf("sent %v", got)
	}
	if _, err := callAPI(ctx, api.Client(), http.MethodGet, api.URL+"?size=aaaaa", nil, nil, 4); !errors.Is(err, errTooLarge) {
		t.Errorf("an answer over the limit: %v", err)
	}
	secretURL := "http://user:url-secret@127.0.0.1:1/ca?key=query-secret"
	if _, err := callAPI(ctx, api.Client(), http.MethodGet, secretURL, nil, nil, 4); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error names the URL: %v", err)
	}
}
