package contact

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEncodeValue(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"2", "2"},
		{"b@example.com", "b@example.com"},
		{`{"order_id":"ORD-5578XZ","order_quantity":3}`, `{"order_id":"ORD-5578XZ","order_quantity":3}`},
		{"Nguyen Van B", "Nguyen Van B"},
		{"Nguyễn Văn B", "Nguy%E1%BB%85n%20V%C4%83n%20B"},
		{"Eve\r\nX-Contact-Id: 1", "Eve%0D%0AX-Contact-Id%3A%201"},
		{"nul\x00byte", "nul%00byte"},
		{"100%", "100%25"},
		{" padded", "%20padded"},
		{"padded ", "padded%20"},
		{"tab\there", "tab%09here"},
		{"del\x7f", "del%7F"},
		{"😀", "%F0%9F%98%80"},
		{"\xff\xfe", "%FF%FE"},
	} {
		got := EncodeValue(tc.in)
		if got != tc.want {
			t.Errorf("EncodeValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := DecodeValue(got)
		if err != nil || back != tc.in {
			t.Errorf("DecodeValue(%q) = %q, %v; want %q", got, back, err, tc.in)
		}
	}
}

func TestDecodeValueErrors(t *testing.T) {
	for _, in := range []string{"%", "%2", "%zz", "abc%4", "%G0"} {
		if _, err := DecodeValue(in); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("DecodeValue(%q): err = %v", in, err)
		}
	}
}

func TestHeaderName(t *testing.T) {
	for field, want := range map[string]string{
		"id": "X-Contact-Id", "phone_number": "X-Contact-Phone-Number", "country_code": "X-Contact-Country-Code",
		"identify_by": "X-Contact-Identify-By", "assertion": "X-Contact-Assertion", "metadata": "X-Contact-Metadata",
	} {
		if got := HeaderName(DefaultPrefix, field); got != want {
			t.Errorf("HeaderName(%q) = %q, want %q", field, got, want)
		}
	}
	if got := HeaderName("X-Visitor-", "email"); got != "X-Visitor-Email" {
		t.Errorf("custom prefix: %q", got)
	}
}

func TestDataText(t *testing.T) {
	var d Data
	if err := json.Unmarshal([]byte(`{"id":2,"float":2.50,"big":12345678901234567890,"s":"a\"b","vip":true,"n":null,
		"metadata":{ "a" : [1, 2] },"empty":""}`), &d); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field, want string
		ok          bool
	}{
		{"id", "2", true}, {"float", "2.50", true}, {"big", "12345678901234567890", true}, {"s", `a"b`, true}, {"vip", "true", true},
		{"metadata", `{"a":[1,2]}`, true}, {"empty", "", true}, {"n", "", false}, {"absent", "", false},
	} {
		got, ok := d.Text(tc.field)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Text(%q) = %q, %v; want %q, %v", tc.field, got, ok, tc.want, tc.ok)
		}
	}
}

func TestHeadersRoundTrip(t *testing.T) {
	var d Data
	if err := json.Unmarshal([]byte(`{"id":"2","name":"Nguyễn Văn B","email":"b@example.com","phone_number":"0912345678",
		"country_code":"+84","avatar":"https://cdn.example.com/a b.png","label":"VIP 100%",
		"metadata":{"order_id":"ORD-5578XZ","order_quantity":3,"note":"line1\nline2"},"ignored":"x"}`), &d); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	SetHeaders(h, DefaultPrefix, d, "id")
	for name, values := range h {
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n\x00") || !utf8.ValidString(v) {
				t.Errorf("%s carries %q", name, v)
			}
		}
	}
	if h.Get("X-Contact-Ignored") != "" {
		t.Error("a field that is not a contact field became a header")
	}
	c, err := FromHeaders(h, DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	want := Contact{ID: "2", Name: "Nguyễn Văn B", Email: "b@example.com", PhoneNumber: "0912345678", CountryCode: "+84",
		Avatar: "https://cdn.example.com/a b.png", Label: "VIP 100%", IdentifyBy: "id"}
	md := c.Metadata
	c.Metadata = nil
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("contact = %+v, want %+v", *c, want)
	}
	if md["order_id"] != "ORD-5578XZ" || md["order_quantity"] != 3.0 || md["note"] != "line1\nline2" {
		t.Errorf("metadata = %v", md)
	}
	fromData, err := d.Contact("id")
	if err != nil || fromData.Name != want.Name || fromData.Metadata["order_id"] != "ORD-5578XZ" {
		t.Errorf("Data.Contact = %+v, %v", fromData, err)
	}
}

func TestStripHeaders(t *testing.T) {
	h := http.Header{}
	for _, name := range []string{"X-Contact-Id", "X_Contact_Id", "x.contact.id", "X-CONTACT-ID", "X-Contact-", "X-Contact-Assertion",
		"X-Bot-Id", "X-Contact", "X-Contacts-Id", "X-Access-Token"} {
		h[name] = []string{"v"}
	}
	StripHeaders(h, DefaultPrefix)
	var left []string
	for name := range h {
		left = append(left, name)
	}
	slices.Sort(left)
	if want := []string{"X-Access-Token", "X-Bot-Id", "X-Contact", "X-Contacts-Id"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}

func TestFromHeadersAnonymous(t *testing.T) {
	if _, err := FromHeaders(http.Header{"X-Contact-Id": {"2"}}, DefaultPrefix); !errors.Is(err, ErrNoContact) {
		t.Errorf("without Identify-By: %v", err)
	}
	h := http.Header{"X-Contact-Identify-By": {"id"}, "X-Contact-Name": {"%zz"}}
	if _, err := FromHeaders(h, DefaultPrefix); !errors.Is(err, ErrBadEncoding) {
		t.Errorf("bad encoding: %v", err)
	}
	h = http.Header{"X-Contact-Identify-By": {"id"}, "X-Contact-Metadata": {"not json"}}
	if _, err := FromHeaders(h, DefaultPrefix); err == nil {
		t.Error("bad metadata accepted")
	}
}

// FuzzEncodeValue checks the encoder's promise: the original comes back, and the
// header value has only printable ASCII and no space at either end.
func FuzzEncodeValue(f *testing.F) {
	for _, seed := range []string{"", "plain", "Nguyễn Văn B", "a\r\nb", "%", " x ", "\x00", "\xff", "~-._", "😀"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		enc := EncodeValue(v)
		for i := 0; i < len(enc); i++ {
			if enc[i] < 0x20 || enc[i] > 0x7e {
				t.Fatalf("EncodeValue(%q) = %q has byte %#x", v, enc, enc[i])
			}
		}
		if strings.HasPrefix(enc, " ") || strings.HasSuffix(enc, " ") {
			t.Fatalf("EncodeValue(%q) = %q has an outer space", v, enc)
		}
		dec, err := DecodeValue(enc)
		if err != nil || dec != v {
			t.Fatalf("DecodeValue(EncodeValue(%q)) = %q, %v", v, dec, err)
		}
	})
}

// FuzzDecodeValue feeds arbitrary header values to the decoder, as a backend would
// receive them from anyone: it must never panic, and what it accepts re-encodes to a
// value that decodes to the same text.
func FuzzDecodeValue(f *testing.F) {
	for _, seed := range []string{"", "%", "%4", "%41", "%E1%BB%85", "100%25", "a%zzb", "%%%"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		dec, err := DecodeValue(v)
		if err != nil {
			return
		}
		if again, err := DecodeValue(EncodeValue(dec)); err != nil || again != dec {
			t.Fatalf("%q: decoded %q, round trip %q, %v", v, dec, again, err)
		}
	})
}

func BenchmarkEncodeValue(b *testing.B) {
	for name, v := range map[string]string{"ascii": "b@example.com", "vietnamese": "Nguyễn Văn B"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				EncodeValue(v)
			}
		})
	}
}
