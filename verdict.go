package customauth

import (
	"encoding/binary"
	"errors"
	"time"
)

// verdictKind is what the identity step decided about a token.
type verdictKind uint8

const (
	verdictError verdictKind = iota
	verdictVerified
	verdictRejected
)

func (k verdictKind) String() string {
	switch k {
	case verdictVerified:
		return "verified"
	case verdictRejected:
		return "rejected"
	}
	return "error"
}

// verdict is what the identity step decided about a token (the identity API's answer,
// a verified JWT, or a cached verdict): its kind, the identity, the cache directives
// and how it was reached. The flow's outcome takes what it needs from it.
type verdict struct {
	kind     verdictKind
	identity identity // when verified
	err      error    // when an error, why
	// health is what the call tells about the API, for the circuit breaker: only
	// apiDown (connection error, timeout, 5xx) opens it.
	health apiHealth
	// noStore and maxAge come from the answer's Cache-Control.
	noStore bool
	maxAge  time.Duration // -1 when absent
	// apiStatus is the API's HTTP status code, 0 when there was no answer.
	apiStatus int
	// cacheHit and apiTime describe how the verdict was reached, for logs and metrics.
	cacheHit bool
	apiTime  time.Duration
}

// failure is an error verdict; apiIsDown tells the breaker whether the API is down or
// answered badly.
func failure(err error, apiIsDown bool) verdict {
	health := apiUp
	if apiIsDown {
		health = apiDown
	}
	return verdict{kind: verdictError, err: err, health: health, maxAge: -1}
}

// inconclusive is an error verdict that tells nothing about the API.
func inconclusive(err error) verdict {
	return verdict{kind: verdictError, err: err, health: apiUnknown, maxAge: -1}
}

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

// apiHealth is what one call tells the breaker about the API.
type apiHealth uint8

const (
	// apiUp: the API answered, whatever it said (a rejection and a malformed answer
	// included).
	apiUp apiHealth = iota
	// apiDown: connection error, timeout or 5xx.
	apiDown
	// apiUnknown: the call ended for a reason of the gateway's (its config is being
	// unloaded, its caller stopped waiting, the request could not be built); it counts
	// neither way.
	apiUnknown
)
