package customauth

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"
	"unsafe"

	"github.com/custom-auth/custom_auth/contact"
)

// identity is a contact verified by the identity API or verify_jwt, in one pointer-free block that
// the cache holds as is: the primary key, the data object exactly as the API sent it
// (compacted) and each contact header's value, encoded once for every request that
// the cached identity serves, back to back after their end offsets. The accessors
// return strings that share the block (it is never written after newIdentity), so
// serving a cached identity copies nothing, and a full cache is mostly memory that
// the garbage collector does not scan.
//
// Layout: a uint16 bit set of the headers present, then one little-endian uint32 end
// offset per part (primary, raw, one per contact.Fields), then the parts.
type identity []byte

const (
	partPrimary = iota
	partRaw
	partFirstHeader
	identityParts = partFirstHeader + contactFieldCount
	// contactFieldCount is len(contact.Fields); a test keeps them equal.
	contactFieldCount = 8
	identityHeaderLen = 2 + 4*identityParts
)

func newIdentity(data contact.Data, raw []byte, primary string) identity {
	var headers [contactFieldCount]string
	var present uint16
	size := identityHeaderLen + len(primary) + len(raw)
	for i, field := range contact.Fields {
		if text, ok := data.Text(field); ok {
			headers[i] = contact.EncodeValue(text)
			present |= 1 << i
			size += len(headers[i])
		}
	}
	id := make(identity, identityHeaderLen, size)
	binary.LittleEndian.PutUint16(id, present)
	appendPart := func(part int, text []byte) {
		id = append(id, text...)
		binary.LittleEndian.PutUint32(id[2+4*part:], uint32(len(id)))
	}
	appendPart(partPrimary, []byte(primary))
	appendPart(partRaw, raw)
	for i := range headers {
		appendPart(partFirstHeader+i, []byte(headers[i]))
	}
	return id
}

// part returns one part of the block, sharing it.
func (id identity) part(i int) []byte {
	start := uint32(identityHeaderLen)
	if i > 0 {
		start = binary.LittleEndian.Uint32(id[2+4*(i-1):])
	}
	return id[start:binary.LittleEndian.Uint32(id[2+4*i:])]
}

// text returns a part as a string that shares the block.
func (id identity) text(i int) string {
	p := id.part(i)
	return unsafe.String(unsafe.SliceData(p), len(p))
}

// primary is the value of the bot's identify_by field, as text.
func (id identity) primary() string { return id.text(partPrimary) }

// raw is the data object as the API sent it, compacted.
func (id identity) raw() []byte { return id.part(partRaw) }

// header returns the encoded header value of contact.Fields[field], if present.
func (id identity) header(field int) (string, bool) {
	if binary.LittleEndian.Uint16(id)&(1<<field) == 0 {
		return "", false
	}
	return id.text(partFirstHeader + field), true
}

// headerCount is the number of contact headers present.
func (id identity) headerCount() int { return bits.OnesCount16(binary.LittleEndian.Uint16(id)) }

// size is what the contact adds to a request: its header values and its data object.
func (id identity) size() int { return len(id) - identityHeaderLen - len(id.part(partPrimary)) }

// fields parses the data object, field by field.
func (id identity) fields() contact.Data {
	var data contact.Data
	// Parsed when the identity was made (identityOf); a block from the shared cache
	// that is not JSON has no fields.
	_ = json.Unmarshal(id.raw(), &data)
	return data
}

// jsonObject returns a JSON object field by field; nil when raw is not an object.
func jsonObject(raw json.RawMessage) contact.Data {
	var obj contact.Data
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	return obj
}

// validIdentity checks an identity block's offsets.
func validIdentity(id identity) bool {
	if len(id) < identityHeaderLen {
		return false
	}
	end := uint32(identityHeaderLen)
	for i := range identityParts {
		next := binary.LittleEndian.Uint32(id[2+4*i:])
		if next < end || next > uint32(len(id)) {
			return false
		}
		end = next
	}
	return end == uint32(len(id)) && len(id.part(partPrimary)) > 0
}

// identityOf is the identity of a verified contact's data object (raw is its compact
// JSON). Its identify_by field must identify someone, and the contact must fit in the
// request headers; whoever vouched for the data, an identity API or a signed token.
func identityOf(data contact.Data, raw []byte, identifyBy string) (identity, error) {
	primary, ok := primaryKey(data[identifyBy])
	if !ok {
		return nil, fmt.Errorf("no data.%s: it must be a non-blank string or a number", identifyBy)
	}
	id := newIdentity(data, raw, primary)
	if size := id.size(); size > maxContactSize {
		return nil, fmt.Errorf("the contact is %d bytes, over the %d that fit in request headers", size, maxContactSize)
	}
	return id, nil
}

// maxContactSize bounds a contact's encoded header values and its data object (which
// the assertion carries): backends commonly refuse requests whose headers pass 8 to
// 16 KiB, and a visitor whose contact cannot be sent whole chats anonymously instead.
const maxContactSize = 8 << 10

// primaryKey reads the primary-key field of the data object: a string that is not only
// white space, or a number as its JSON text. Anything else identifies no one.
func primaryKey(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		var text string
		if json.Unmarshal(raw, &text) != nil || strings.TrimSpace(text) == "" {
			return "", false
		}
		return text, true
	case c == '-' || '0' <= c && c <= '9':
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return "", false
		}
		return string(raw), true
	}
	return "", false
}

func compactJSON(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
