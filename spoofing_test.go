package customauth

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/custom-auth/custom_auth/contact"
)

// TestStripSpoofingTrailers sends, on a raw connection, a chunked request that declares
// one trailer and sends contact trailers too: net/http merges every trailer it reads
// into the declared map when the body ends, and none with the prefix may be left.
func TestStripSpoofingTrailers(t *testing.T) {
	type seen struct {
		body    string
		trailer http.Header
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stripSpoofing(r, contact.DefaultPrefix)
		body, _ := io.ReadAll(r.Body)
		got <- seen{string(body), r.Trailer.Clone()}
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /chat HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n"+
		"Trailer: X-Checksum, X-Contact-Id\r\n\r\n"+
		"5\r\nhello\r\n0\r\n"+
		"X-Checksum: abc\r\nX-Contact-Id: 999\r\nX_Contact_Name: Mallory\r\nx.contact.label: ADMIN\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	s := <-got
	if s.body != "hello" {
		t.Errorf("body %q", s.body)
	}
	var names []string
	for name := range s.trailer {
		names = append(names, name)
	}
	if !slices.Equal(names, []string{"X-Checksum"}) || s.trailer.Get("X-Checksum") != "abc" {
		t.Errorf("trailers after the body: %q", s.trailer)
	}
}

// A request that declares no trailers keeps its body: no wrapper, no cost.
func TestStripSpoofingLeavesBodyWithoutTrailers(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/chat", strings.NewReader("hello"))
	r.Header.Set("X-Contact-Id", "999")
	body := r.Body
	stripSpoofing(r, contact.DefaultPrefix)
	if r.Body != body {
		t.Errorf("body wrapped: %T", r.Body)
	}
	if len(r.Header) != 0 {
		t.Errorf("headers left: %v", r.Header)
	}
}
