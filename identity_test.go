package customauth

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseAnswer(t *testing.T) {
	for _, tc := range []struct {
		name       string
		code       int
		body       string
		identifyBy string
		want       verdictKind
		primary    string
	}{
		{"verified", 200, `{"status":true,"message":"ok","data":{"id":"2","name":"B"}}`, "id", verdictVerified, "2"},
		{"status and message optional", 200, `{"data":{"id":"2"}}`, "id", verdictVerified, "2"},
		{"201 is fine", 201, `{"data":{"id":"2"}}`, "id", verdictVerified, "2"},
		{"numeric id", 200, `{"data":{"id":42}}`, "id", verdictVerified, "42"},
		{"large numeric id keeps its digits", 200, `{"data":{"id":12345678901234567890}}`, "id", verdictVerified, "12345678901234567890"},
		{"by email", 200, `{"data":{"email":"b@example.com"}}`, "email", verdictVerified, "b@example.com"},
		{"by phone", 200, `{"data":{"phone_number":"0912"}}`, "phone_number", verdictVerified, "0912"},
		{"message of any type", 200, `{"message":{"code":1},"data":{"id":"2"}}`, "id", verdictVerified, "2"},
		{"status false", 200, `{"status":false,"data":{"id":"2"}}`, "id", verdictRejected, ""},
		{"401", 401, `{"data":{"id":"2"}}`, "id", verdictRejected, ""},
		{"403", 403, ``, "id", verdictRejected, ""},
		{"404", 404, `not json`, "id", verdictRejected, ""},
		{"500", 500, `{"data":{"id":"2"}}`, "id", verdictError, ""},
		{"302", 302, ``, "id", verdictError, ""},
		{"400", 400, `{}`, "id", verdictError, ""},
		{"not JSON", 200, `<html>`, "id", verdictError, ""},
		{"JSON array", 200, `[{"data":{"id":"2"}}]`, "id", verdictError, ""},
		{"no data", 200, `{"status":true}`, "id", verdictError, ""},
		{"null data", 200, `{"data":null}`, "id", verdictError, ""},
		{"string data", 200, `{"data":"2"}`, "id", verdictError, ""},
		{"missing primary", 200, `{"data":{"email":"b@example.com"}}`, "id", verdictError, ""},
		{"null primary", 200, `{"data":{"id":null}}`, "id", verdictError, ""},
		{"empty primary", 200, `{"data":{"id":""}}`, "id", verdictError, ""},
		{"empty body", 200, ``, "id", verdictError, ""},
		{"status true", 200, `{"status":true,"data":{"id":"2"}}`, "id", verdictVerified, "2"},
		{"status string false", 200, `{"status":"false","data":{"id":"2"}}`, "id", verdictError, ""},
		{"status string true", 200, `{"status":"true","data":{"id":"2"}}`, "id", verdictError, ""},
		{"status 0", 200, `{"status":0,"data":{"id":"2"}}`, "id", verdictError, ""},
		{"status 1", 200, `{"status":1,"data":{"id":"2"}}`, "id", verdictError, ""},
		{"status null", 200, `{"status":null,"data":{"id":"2"}}`, "id", verdictError, ""},
		{"object primary", 200, `{"data":{"id":{}}}`, "id", verdictError, ""},
		{"array primary", 200, `{"data":{"id":[]}}`, "id", verdictError, ""},
		{"blank primary", 200, `{"data":{"id":"   "}}`, "id", verdictError, ""},
		{"tab primary", 200, `{"data":{"id":"\t"}}`, "id", verdictError, ""},
		{"boolean primary", 200, `{"data":{"id":true}}`, "id", verdictError, ""},
		{"negative number primary", 200, `{"data":{"id":-7}}`, "id", verdictVerified, "-7"},
		{"contact too large for headers", 200, `{"data":{"id":"2","metadata":{"x":"` + strings.Repeat("a", maxContactSize) + `"}}}`, "id", verdictError, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := parseAnswer(tc.code, []byte(tc.body), tc.identifyBy)
			if res.kind != tc.want {
				t.Fatalf("result = %v (%v), want %v", res.kind, res.err, tc.want)
			}
			if tc.want == verdictError && res.err == nil {
				t.Error("error without a reason")
			}
			if tc.want == verdictVerified {
				if res.identity.primary() != tc.primary {
					t.Errorf("primary = %q, want %q", res.identity.primary(), tc.primary)
				}
				if !json.Valid(res.identity.raw()) {
					t.Errorf("raw data is not JSON: %s", res.identity.raw())
				}
			}
		})
	}
}

func TestParseAnswerCountsOnlyOutagesForTheBreaker(t *testing.T) {
	if parseAnswer(503, nil, "id").health != apiDown {
		t.Error("a 5xx must count toward opening the breaker")
	}
	for _, body := range []string{`garbage`, `{"data":{}}`} {
		if parseAnswer(200, []byte(body), "id").health == apiDown {
			t.Errorf("malformed answer %q must not open the breaker", body)
		}
	}
	if parseAnswer(401, nil, "id").health == apiDown {
		t.Error("a rejection must not open the breaker")
	}
}

func TestCacheControl(t *testing.T) {
	for _, tc := range []struct {
		header  string
		noStore bool
		maxAge  time.Duration
	}{
		{"", false, -1},
		{"no-store", true, -1},
		{"No-Store, max-age=5", true, 5 * time.Second},
		{"private, max-age=60", false, time.Minute},
		{`max-age="7"`, false, 7 * time.Second},
		{"max-age=0", false, 0},
		{"max-age=-3", false, -1},
		{"max-age=abc", false, -1},
		{"max-age=18446744074", false, time.Duration(math.MaxInt64 / int64(time.Second) * int64(time.Second))},
		{"max-age=99999999999999999999999", false, -1},
	} {
		noStore, maxAge := cacheControl(tc.header)
		if noStore != tc.noStore || maxAge != tc.maxAge {
			t.Errorf("cacheControl(%q) = %v, %v; want %v, %v", tc.header, noStore, maxAge, tc.noStore, tc.maxAge)
		}
	}
}

// FuzzParseAnswer feeds arbitrary answers to the parser: it must never panic, and a
// verified answer always has a non-empty primary key and valid JSON data.
func FuzzParseAnswer(f *testing.F) {
	for _, seed := range []string{
		`{"status":true,"data":{"id":"2","name":"Nguyễn","metadata":{"a":[1,2]}}}`,
		`{"data":{"id":42}}`, `{"data":{"id":1e400}}`, `{"status":"false","data":{"id":"x"}}`,
		`{"status":false}`, `{"data":null}`, `{"data":{"id":""}}`, `[]`, `null`, `{"data":{"id":"\u0000"}}`,
		`{"data":{"id":"2"},"data":{"id":"3"}}`, `{"data":{"id":{"nested":true}}}`,
	} {
		f.Add(200, []byte(seed), "id")
	}
	f.Add(401, []byte(`{}`), "email")
	f.Add(500, []byte(``), "phone_number")
	f.Fuzz(func(t *testing.T, code int, body []byte, identifyBy string) {
		res := parseAnswer(code, body, identifyBy)
		switch res.kind {
		case verdictVerified:
			if res.identity == nil || res.identity.primary() == "" || !json.Valid(res.identity.raw()) {
				t.Fatalf("verified without a usable identity: %+v", res.identity)
			}
			if code < 200 || code > 299 {
				t.Fatalf("verified with status %d", code)
			}
		case verdictError:
			if res.err == nil {
				t.Fatal("error without a reason")
			}
		}
	})
}
