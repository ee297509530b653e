package customauth

import (
	"errors"
	"io"
	"net/http"
	"sync"
)

// callSlots bounds calls in flight: one bot's identity calls (botPolicy.callsInFlight)
// and all remote bots' calls together (bots_url's max_in_flight); nil is unbounded.
// A call that finds no slot free does not wait: its visitor falls back at once.
type callSlots chan struct{}

func newCallSlots(n int) callSlots {
	if n <= 0 {
		return nil
	}
	return make(callSlots, n)
}

// acquire takes a slot if one is free; it never waits.
func (s callSlots) acquire() bool {
	if s == nil {
		return true
	}
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s callSlots) release() {
	if s != nil {
		<-s
	}
}

// errAllSlotsBusy is a call not made because the calls in flight of all remote bots
// fill max_in_flight. It tells nothing about the API, which was not asked: it neither
// trips a breaker nor holds back the next fetch.
var errAllSlotsBusy = errors.New("not called: the calls in flight of all remote bots fill max_in_flight")

// boundedTransport makes each call hold a slot from the request until its answer's
// body is closed, or until it fails.
type boundedTransport struct {
	slots callSlots
	next  http.RoundTripper
}

func (t boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.slots.acquire() {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return nil, errAllSlotsBusy
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.slots.release()
		return nil, err
	}
	resp.Body = &slotBody{ReadCloser: resp.Body, release: sync.OnceFunc(t.slots.release)}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport
// underneath, so that a config that is unloaded leaves no idle connection behind.
func (t boundedTransport) CloseIdleConnections() {
	if closer, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		closer.CloseIdleConnections()
	}
}

// slotBody gives its call's slot back when closed.
type slotBody struct {
	io.ReadCloser
	release func()
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}
