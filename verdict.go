package customauth

import (
	"encoding/binary"
	"errors"
	"time"
)

// storedVerdict is a cached verdict in one pointer-free block: what the identity API
// said (verified or rejected), when, its HTTP status and cache directives, and for a
// verified visitor the identity. The local cache holds it as is; the same bytes are
// what a shared cache stores.
//
// Layout: kind (1 byte), no-store (1), HTTP status (uint16), max-age (int64
// nanoseconds, -1 when absent), stored (int64 Unix nanoseconds), then the identity.
type storedVerdict []byte

const verdictHeaderLen = 20

// encodeVerdict writes a verdict that was reached at stored.
func encodeVerdict(res verdict, stored time.Time) storedVerdict {
	v := make(storedVerdict, verdictHeaderLen, verdictHeaderLen+len(res.identity))
	v[0] = byte(res.kind)
	if res.noStore {
		v[1] = 1
	}
	binary.LittleEndian.PutUint16(v[2:], uint16(res.apiStatus))
	binary.LittleEndian.PutUint64(v[4:], uint64(res.maxAge))
	binary.LittleEndian.PutUint64(v[12:], uint64(stored.UnixNano()))
	return append(v, res.identity...)
}

// verdict reads the block back; its identity shares the block.
func (v storedVerdict) verdict() verdict {
	res := verdict{
		kind:      verdictKind(v[0]),
		noStore:   v[1] == 1,
		apiStatus: int(binary.LittleEndian.Uint16(v[2:])),
		maxAge:    time.Duration(int64(binary.LittleEndian.Uint64(v[4:]))),
	}
	if len(v) > verdictHeaderLen {
		res.identity = identity(v[verdictHeaderLen:])
	}
	return res
}

// stored is when the verdict was reached.
func (v storedVerdict) stored() time.Time {
	return time.Unix(0, int64(binary.LittleEndian.Uint64(v[12:])))
}

var errBadVerdict = errors.New("not a verdict")

// decodeVerdict checks bytes that were stored elsewhere, such as a shared cache, before
// they are read as a verdict.
func decodeVerdict(b []byte) (storedVerdict, error) {
	v := storedVerdict(b)
	if len(v) < verdictHeaderLen || v[1] > 1 {
		return nil, errBadVerdict
	}
	switch verdictKind(v[0]) {
	case verdictVerified:
		if !validIdentity(identity(v[verdictHeaderLen:])) {
			return nil, errBadVerdict
		}
	case verdictRejected:
		if len(v) != verdictHeaderLen {
			return nil, errBadVerdict
		}
	default:
		return nil, errBadVerdict
	}
	return v, nil
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
