package customauth

import (
	"bytes"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

func TestIdentityHasEveryContactField(t *testing.T) {
	if len(contact.Fields) != contactFieldCount {
		t.Fatalf("contact.Fields has %d fields, contactFieldCount says %d", len(contact.Fields), contactFieldCount)
	}
}

func TestVerdictRoundTrip(t *testing.T) {
	stored := time.Unix(1795520000, 123456789)
	verified := parseAnswer(200, []byte(`{"data":`+aliceData+`}`), "id")
	verified.apiStatus, verified.maxAge, verified.noStore = 201, 10*time.Second, true
	rejected := verdict{kind: verdictRejected, apiStatus: 401, maxAge: -1}
	for _, res := range []verdict{verified, rejected} {
		v := encodeVerdict(res, stored)
		got := v.verdict()
		if got.kind != res.kind || got.apiStatus != res.apiStatus || got.maxAge != res.maxAge || got.noStore != res.noStore ||
			!bytes.Equal(got.identity, res.identity) || !v.stored().Equal(stored) {
			t.Errorf("%v came back as %+v, stored %v", res, got, v.stored())
		}
		if _, err := decodeVerdict(v); err != nil {
			t.Errorf("decodeVerdict refused a verdict it wrote: %v", err)
		}
	}
	id := verified.identity
	if id.primary() != "2" || !bytes.Contains(id.raw(), []byte(`"order_id":"ORD-5578XZ"`)) {
		t.Errorf("primary %q, raw %s", id.primary(), id.raw())
	}
	if name, ok := id.header(1); !ok || name != contact.EncodeValue("Nguyễn Văn B") {
		t.Errorf("name header %q, %v", name, ok)
	}
	if id.headerCount() != 8 {
		t.Errorf("%d headers, want 8", id.headerCount())
	}
	sparse := parseAnswer(200, []byte(`{"data":{"id":7,"label":""}}`), "id").identity
	if _, ok := sparse.header(1); ok {
		t.Error("an absent name has a header")
	}
	if label, ok := sparse.header(6); !ok || label != "" {
		t.Errorf("an empty label: %q, %v", label, ok)
	}
}

// FuzzDecodeVerdict: bytes from a shared cache are never trusted; whatever they are,
// decoding either refuses them or gives a verdict whose parts can all be read.
func FuzzDecodeVerdict(f *testing.F) {
	f.Add([]byte(encodeVerdict(parseAnswer(200, []byte(`{"data":`+aliceData+`}`), "id"), time.Unix(1, 0))))
	f.Add([]byte(encodeVerdict(verdict{kind: verdictRejected, apiStatus: 403, maxAge: -1}, time.Unix(1, 0))))
	f.Add([]byte{})
	f.Add(make([]byte, verdictHeaderLen+identityHeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeVerdict(b)
		if err != nil {
			return
		}
		res := v.verdict()
		if res.kind == verdictVerified {
			_ = res.identity.primary()
			_ = res.identity.raw()
			for i := range contactFieldCount {
				res.identity.header(i)
			}
		}
	})
}
