package contact

import (
	"net/http"
	"testing"
)

func TestStripHeadersAliases(t *testing.T) {
	h := http.Header{}
	for _, name := range []string{
		"X-Contact-Id", "X-CONTACT-ID", "x-contact-id", "X_Contact_Id", "x.contact.id",
		"X_Contact.Name", "X-Contact-", "X-Contact-Identify-By", "X-Contact-Assertion",
	} {
		h[name] = []string{"spoofed"}
	}
	kept := []string{"X-Contact", "X-Contacts-Id", "Contact-Id", "X-Contac-Id", "X-Bot-Id", "Origin"}
	for _, name := range kept {
		h[name] = []string{"kept"}
	}
	StripHeaders(h, "X-Contact-")
	if len(h) != len(kept) {
		t.Errorf("left %v, want only %v", h, kept)
	}
	for _, name := range kept {
		if h.Get(name) != "kept" {
			t.Errorf("%s was removed", name)
		}
	}
}

func TestStripUsesTheConfiguredPrefix(t *testing.T) {
	h := http.Header{"X-Visitor-Id": {"1"}, "X_visitor_email": {"e"}, "X-Contact-Id": {"2"}}
	StripHeaders(h, "X-Visitor-")
	if len(h) != 1 || h.Get("X-Contact-Id") != "2" {
		t.Errorf("left %v", h)
	}
}

// FuzzStripHeaders checks that no header whose name folds to the prefix
// survives, and that every other header does.
func FuzzStripHeaders(f *testing.F) {
	for _, seed := range []string{"X-Contact-Id", "x_contact_id", "X.CONTACT.ID", "X-Contact", "X-Contactx", "", "ä-Contact-"} {
		f.Add(seed, "X-Contact-")
	}
	f.Fuzz(func(t *testing.T, name, prefix string) {
		if prefix == "" {
			return
		}
		h := http.Header{name: {"v"}, "Keep-Me": {"v"}}
		StripHeaders(h, prefix)
		_, present := h[name]
		folded := func(s string) string {
			b := []byte(s)
			for i := range b {
				b[i] = foldHeaderByte(b[i])
			}
			return string(b)
		}
		wantGone := len(name) >= len(prefix) && folded(name[:len(prefix)]) == folded(prefix)
		if present == wantGone {
			t.Fatalf("name %q prefix %q: present=%v", name, prefix, present)
		}
		if !HasPrefix("Keep-Me", prefix) && h.Get("Keep-Me") != "v" {
			t.Fatal("an unrelated header was removed")
		}
	})
}

func BenchmarkStripHeaders(b *testing.B) {
	b.ReportAllocs()
	base := http.Header{
		"Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Content-Type": {"application/json"},
		"Origin": {"https://shop.example.com"}, "User-Agent": {"Mozilla/5.0"}, "X-Access-Token": {"t"},
		"X-Bot-Id": {"shop"}, "X-User-Id": {"2"},
	}
	for b.Loop() {
		StripHeaders(base, "X-Contact-")
	}
}
