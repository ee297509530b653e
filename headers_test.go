package customauth

import "testing"

func TestCheckHeaderPrefix(t *testing.T) {
	for prefix, ok := range map[string]bool{
		"X-Contact-": true, "X-Visitor_": true, "": false, "X Contact": false, "X-Contact:": false, "X-\r\n": false,
	} {
		if err := checkHeaderPrefix(prefix); (err == nil) != ok {
			t.Errorf("checkHeaderPrefix(%q) = %v", prefix, err)
		}
	}
}
