package customauth

import (
	"encoding/binary"
	"errors"
	"time"
)

// verdict is a cached verdict in one pointer-free block: what the identity API said
// (verified or rejected), when, its HTTP status and cache directives, and for a
// verified visitor the identity. The local cache holds it as is; the same bytes are
// what a shared cache stores.
//
// Layout: result (1 byte), no-store (1), HTTP status (uint16), max-age (int64
// nanoseconds, -1 when absent), stored (int64 Unix nanoseconds), then the identity.
type verdict []byte

const verdictHeaderLen = 20

// encodeVerdict writes a verdict that was reached at stored.
func encodeVerdict(res lookupResult, stored time.Time) verdict {
	v := make(verdict, verdictHeaderLen, verdictHeaderLen+len(res.identity))
	v[0] = byte(res.result)
	if res.noStore {
		v[1] = 1
	}
	binary.LittleEndian.PutUint16(v[2:], uint16(res.status))
	binary.LittleEndian.PutUint64(v[4:], uint64(res.maxAge))
	binary.LittleEndian.PutUint64(v[12:], uint64(stored.UnixNano()))
	return append(v, res.identity...)
}

// lookupResult reads the verdict back; its identity shares the block.
func (v verdict) lookupResult() lookupResult {
	res := lookupResult{
		result:  result(v[0]),
		noStore: v[1] == 1,
		status:  int(binary.LittleEndian.Uint16(v[2:])),
		maxAge:  time.Duration(int64(binary.LittleEndian.Uint64(v[4:]))),
	}
	if len(v) > verdictHeaderLen {
		res.identity = identity(v[verdictHeaderLen:])
	}
	return res
}

// stored is when the verdict was reached.
func (v verdict) stored() time.Time {
	return time.Unix(0, int64(binary.LittleEndian.Uint64(v[12:])))
}

var errBadVerdict = errors.New("not a verdict")

// decodeVerdict checks bytes that were stored elsewhere, such as a shared cache, before
// they are read as a verdict.
func decodeVerdict(b []byte) (verdict, error) {
	v := verdict(b)
	if len(v) < verdictHeaderLen || v[1] > 1 {
		return nil, errBadVerdict
	}
	switch result(v[0]) {
	case resultVerified:
		if !validIdentity(identity(v[verdictHeaderLen:])) {
			return nil, errBadVerdict
		}
	case resultRejected:
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
