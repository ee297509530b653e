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
		{"\xff\xfe", "%FF%FE"}, // encoded, but refused by DecodeValue: not UTF-8
	} {
		got := EncodeValue(tc.in)
		if got != tc.want {
			t.Errorf("EncodeValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(tc.in) {
			continue
		}
		back, err := DecodeValue(got)
		if err != nil || back != tc.in {
			t.Errorf("DecodeValue(%q) = %q, %v; want %q", got, back, err, tc.in)
		}
	}
}

func TestDecodeValueErrors(t *testing.T) {
	for _, in := range []string{
		"%", "%2", "%zz", "abc%4", "%G0",
		// Well-formed percent-encoding of bytes that are not UTF-8.
		"%C3%28", "%FF%FE", "%E1%BB", "%C0%AF", "%ED%A0%80", "ok%80",
		// Raw bytes that are not UTF-8, in a value with no '%'.
		"\xff", "Nguy\xe1n",
	} {
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

// An identity API may send bytes that are not UTF-8 inside an object; encoding/json
// keeps them in raw JSON. The headers made of it must still decode.
func TestDataTextIsUTF8(t *testing.T) {
	var d Data
	if err := json.Unmarshal([]byte("{\"name\":\"B\xff\",\"metadata\":{\"note\":\"a\xc3(b\"}}"), &d); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"name": "B\uFFFD", "metadata": "{\"note\":\"a\uFFFD(b\"}"} {
		if got, _ := d.Text(field); got != want {
			t.Errorf("Text(%q) = %q, want %q", field, got, want)
		}
	}
	h := http.Header{}
	SetHeaders(h, DefaultPrefix, d, "id")
	c, err := FromHeaders(h, DefaultPrefix)
	if err != nil || c.Metadata["note"] != "a\uFFFD(b" {
		t.Errorf("FromHeaders: %+v, %v", c, err)
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
	for _, tc := range []struct {
		name   string
		prefix string
		in     http.Header
		want   http.Header
	}{
		{
			name:   "every spelling of the prefix",
			prefix: DefaultPrefix,
			in: http.Header{
				"X-Contact-Id": {"1"}, "X-CONTACT-ID": {"1"}, "x-contact-id": {"1"}, "X_Contact_Id": {"1"}, "x.contact.id": {"1"},
				"X_Contact.Name": {"1"}, "X-Contact-": {"1"}, "X-Contact-Identify-By": {"1"}, "X-Contact-Assertion": {"1"},
				"X-Contact": {"v"}, "X-Contacts-Id": {"v"}, "Contact-Id": {"v"}, "X-Contac-Id": {"v"},
				"X-Bot-Id": {"v"}, "X-Access-Token": {"v"}, "Origin": {"v"},
			},
			want: http.Header{
				"X-Contact": {"v"}, "X-Contacts-Id": {"v"}, "Contact-Id": {"v"}, "X-Contac-Id": {"v"},
				"X-Bot-Id": {"v"}, "X-Access-Token": {"v"}, "Origin": {"v"},
			},
		},
		{
			name:   "the configured prefix",
			prefix: "X-Visitor-",
			in:     http.Header{"X-Visitor-Id": {"1"}, "X_visitor_email": {"e"}, "X-Contact-Id": {"2"}},
			want:   http.Header{"X-Contact-Id": {"2"}},
		},
		{
			name:   "Connection lists contact headers",
			prefix: DefaultPrefix,
			in:     http.Header{"Connection": {"X-Contact-Id, X-Contact-Identify-By, keep-alive"}},
			want:   http.Header{"Connection": {"keep-alive"}},
		},
		{
			name:   "Connection: other options kept in order, a WebSocket upgrade intact",
			prefix: DefaultPrefix,
			in:     http.Header{"Connection": {"keep-alive ,x_contact_name,\tUpgrade , X.CONTACT.ID", "x-contact-email,  TE"}, "Upgrade": {"websocket"}},
			want:   http.Header{"Connection": {"keep-alive, Upgrade", "TE"}, "Upgrade": {"websocket"}},
		},
		{
			name:   "Connection left empty goes",
			prefix: DefaultPrefix,
			in:     http.Header{"Connection": {"X-Contact-Id", " , x-contact-name ,"}, "X-Contact-Id": {"1"}, "Accept": {"*/*"}},
			want:   http.Header{"Accept": {"*/*"}},
		},
		{
			name:   "Connection in another case",
			prefix: DefaultPrefix,
			in:     http.Header{"connection": {"close, X-Contact-Id"}},
			want:   http.Header{"connection": {"close"}},
		},
		{
			name:   "Connection without contact names is untouched",
			prefix: DefaultPrefix,
			in:     http.Header{"Connection": {"keep-alive,Upgrade", ""}, "Upgrade": {"websocket"}},
			want:   http.Header{"Connection": {"keep-alive,Upgrade", ""}, "Upgrade": {"websocket"}},
		},
		{
			name:   "X-Contact alone is no contact header",
			prefix: DefaultPrefix,
			in:     http.Header{"Connection": {"X-Contact, X-Contacts-Id"}},
			want:   http.Header{"Connection": {"X-Contact, X-Contacts-Id"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			StripHeaders(tc.in, tc.prefix)
			if !reflect.DeepEqual(tc.in, tc.want) {
				t.Errorf("left %q,\nwant %q", tc.in, tc.want)
			}
		})
	}
}

// FuzzStripHeaders checks that no header whose name folds to the prefix survives, that
// every other header does, and that the Connection header keeps exactly the options
// that do not fold to the prefix, in order, and is untouched when it lists none.
func FuzzStripHeaders(f *testing.F) {
	for _, seed := range []string{"X-Contact-Id", "x_contact_id", "X.CONTACT.ID", "X-Contact", "X-Contactx", "", "ä-Contact-"} {
		f.Add(seed, "X-Contact-", "keep-alive, "+seed)
	}
	f.Add("Accept", "X-Contact-", "X-Contact-Id, X-Contact-Identify-By, keep-alive")
	f.Add("Upgrade", "X-Contact-", "Upgrade,,x_contact_id ,\t")
	f.Add("Accept", "X-Contact-", " , ")
	f.Fuzz(func(t *testing.T, name, prefix, connection string) {
		if prefix == "" || strings.EqualFold(name, "Connection") {
			return
		}
		h := http.Header{name: {"v"}, "Keep-Me": {"v"}, "Connection": {connection}}
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

		// The options a proxy reads in a Connection header: comma-separated, trimmed.
		options := func(values []string) (all, kept []string) {
			for _, v := range values {
				for _, o := range strings.Split(v, ",") {
					if o = strings.Trim(o, " \t\r\n"); o != "" {
						all = append(all, o)
						if !HasPrefix(o, prefix) {
							kept = append(kept, o)
						}
					}
				}
			}
			return all, kept
		}
		all, kept := options([]string{connection})
		left, ok := h["Connection"]
		switch {
		case HasPrefix("Connection", prefix):
			if ok {
				t.Fatalf("prefix %q: Connection %q survived", prefix, left)
			}
		case len(kept) == len(all):
			if !slices.Equal(left, []string{connection}) {
				t.Fatalf("Connection %q without prefixed options became %q", connection, left)
			}
		case len(kept) == 0:
			if ok {
				t.Fatalf("Connection %q left as %q", connection, left)
			}
		default:
			if after, _ := options(left); !slices.Equal(after, kept) {
				t.Fatalf("Connection %q became %q, want the options %q", connection, left, kept)
			}
		}
	})
}

func BenchmarkStripHeaders(b *testing.B) {
	base := http.Header{
		"Accept": {"*/*"}, "Accept-Encoding": {"gzip"}, "Content-Type": {"application/json"},
		"Origin": {"https://shop.example.com"}, "User-Agent": {"Mozilla/5.0"}, "X-Access-Token": {"t"},
		"X-Bot-Id": {"shop"}, "X-User-Id": {"2"},
	}
	keepAlive := base.Clone()
	keepAlive["Connection"] = []string{"keep-alive"}
	for name, h := range map[string]http.Header{"no Connection": base, "Connection keep-alive": keepAlive} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				StripHeaders(h, DefaultPrefix)
			}
		})
	}
}

func TestFromHeadersAnonymous(t *testing.T) {
	if _, err := FromHeaders(http.Header{"X-Contact-Id": {"2"}}, DefaultPrefix); !errors.Is(err, ErrNoContact) {
		t.Errorf("without Identify-By: %v", err)
	}
	for _, name := range []string{"%zz", "%C3%28", "\xc3("} {
		h := http.Header{"X-Contact-Identify-By": {"id"}, "X-Contact-Name": {name}}
		if c, err := FromHeaders(h, DefaultPrefix); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("name %q: %+v, %v", name, c, err)
		}
	}
	h := http.Header{"X-Contact-Identify-By": {"%FF"}}
	if c, err := FromHeaders(h, DefaultPrefix); !errors.Is(err, ErrBadEncoding) {
		t.Errorf("identify-by not UTF-8: %+v, %v", c, err)
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
		if !utf8.ValidString(v) {
			if !errors.Is(err, ErrBadEncoding) {
				t.Fatalf("DecodeValue(EncodeValue(%q)) = %q, %v: not UTF-8, yet accepted", v, dec, err)
			}
			return
		}
		if err != nil || dec != v {
			t.Fatalf("DecodeValue(EncodeValue(%q)) = %q, %v", v, dec, err)
		}
	})
}

// FuzzDecodeValue feeds arbitrary header values to the decoder, as a backend would
// receive them from anyone: it must never panic, what it accepts is valid UTF-8, and it
// re-encodes to a value that decodes to the same text.
func FuzzDecodeValue(f *testing.F) {
	for _, seed := range []string{"", "%", "%4", "%41", "%E1%BB%85", "100%25", "a%zzb", "%%%", "%C3%28", "\xff", "%F0%9F%98"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		dec, err := DecodeValue(v)
		if err != nil {
			return
		}
		if !utf8.ValidString(dec) {
			t.Fatalf("%q: decoded %q, not UTF-8", v, dec)
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
