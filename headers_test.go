package customauth

import "testing"

func TestCheckHeaderPrefix(t *testing.T) {
	reads := []string{"X-Bot-Id", "X-Access-Token", "X-User-Id", "Origin", "Referer"}
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"X-Contact-", true},
		{"X-Visitor_", true},
		{"X-Verified-", true},
		{"", false},
		{"X Contact", false},
		{"X-Contact:", false},
		{"X-\r\n", false},
		{"X-", false},            // too short: strips far more than contact headers
		{"X-Bot-", false},        // strips the bot id the module reads
		{"X-Access-", false},     // strips the token
		{"X-User-", false},       // strips the visitor fields
		{"Authorization", false}, // a standard header
		{"Content-", false},
		{"Cookie", false},
		{"Sec-Fetch-", false},
		{"X-Forwarded-", false},
		{"x_bot_i", false}, // compared the way stripping compares
	} {
		if err := checkHeaderPrefix(tc.prefix, reads); (err == nil) != tc.ok {
			t.Errorf("checkHeaderPrefix(%q) = %v, want ok=%v", tc.prefix, err, tc.ok)
		}
	}
}
