// Command servers runs the upstreams of the benchmark in one process: a chat backend
// stand-in that answers "ok", an identity API stand-in, and a stats endpoint. Each
// listens on the address given by its flag (loopback only in bench/run.sh).
//
// The identity API accepts every access token of the form bench-<n> and answers a small
// contact whose id is n (see bench/fixture), so a load generator can send a new visitor
// on every request; any other token is rejected. It answers after -latency, like a real
// identity API across a network.
//
// The backend counts the requests that carry an identity (X-Contact-Id from custom_auth
// or a static header, X-User-Id from forward_auth). A request with an X-Bench-Echo
// header gets, instead of "ok", the request headers the backend received as JSON, so
// the benchmark can check exactly what a gateway handed on.
//
// GET /stats on the stats listener reports all counters as JSON, among them the TCP
// connections each listener accepted. Stats have a listener of their own so that
// reading them never adds a connection to the identity API's count.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/custom-auth/custom_auth/bench/fixture"
)

// rejectedAnswer is what the identity API answers for a token it does not know.
var rejectedAnswer = []byte(`{"status":false,"message":"invalid access token"}`)

var okBody = []byte("ok")

// connCounter counts the TCP connections a server accepted and how many were open at
// most at the same time; its method is an http.Server ConnState hook.
type connCounter struct {
	accepted atomic.Int64
	open     atomic.Int64
	maxOpen  atomic.Int64
}

func (c *connCounter) track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		c.accepted.Add(1)
		n := c.open.Add(1)
		for {
			m := c.maxOpen.Load()
			if n <= m || c.maxOpen.CompareAndSwap(m, n) {
				break
			}
		}
	case http.StateClosed, http.StateHijacked:
		c.open.Add(-1)
	}
}

// backend stands in for the chat backend.
type backend struct {
	conns       connCounter
	requests    atomic.Int64
	withContact atomic.Int64
	withUser    atomic.Int64
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	if r.Header.Get("X-Contact-Id") != "" {
		b.withContact.Add(1)
	}
	if r.Header.Get("X-User-Id") != "" {
		b.withUser.Add(1)
	}
	if r.Header.Get("X-Bench-Echo") != "" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Header)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(okBody)
}

// identityAPI stands in for the customer's identity endpoint (POST /ca, for custom_auth)
// and for a forward_auth endpoint (GET /check).
type identityAPI struct {
	latency     time.Duration
	conns       connCounter
	caCalls     atomic.Int64
	checkCalls  atomic.Int64
	rejectCalls atomic.Int64
	otherCalls  atomic.Int64
}

func (a *identityAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/ca" && r.Method == http.MethodPost:
		a.caCalls.Add(1)
		a.serveCA(w, r)
	case r.URL.Path == "/check":
		a.checkCalls.Add(1)
		a.serveCheck(w, r)
	default:
		a.otherCalls.Add(1)
		http.NotFound(w, r)
	}
}

// wait holds the answer back for the configured latency; it reports false when the
// caller left meanwhile.
func (a *identityAPI) wait(r *http.Request) bool {
	if a.latency <= 0 {
		return true
	}
	t := time.NewTimer(a.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (a *identityAPI) serveCA(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AccessToken string `json:"access_token"`
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || json.Unmarshal(raw, &body) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if !a.wait(r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	id, ok := fixture.ContactID(body.AccessToken)
	if !ok {
		a.rejectCalls.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		w.Write(rejectedAnswer)
		return
	}
	w.Write(fixture.AppendAnswer(make([]byte, 0, 192), id))
}

func (a *identityAPI) serveCheck(w http.ResponseWriter, r *http.Request) {
	if !a.wait(r) {
		return
	}
	id, ok := fixture.ContactID(r.Header.Get("X-Access-Token"))
	if !ok {
		a.rejectCalls.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("X-User-Id", id)
	w.WriteHeader(http.StatusOK)
}

func statsHandler(api *identityAPI, chat *backend) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(fixture.Stats{
			CA:              api.caCalls.Load(),
			Check:           api.checkCalls.Load(),
			Rejected:        api.rejectCalls.Load(),
			Other:           api.otherCalls.Load(),
			APIConns:        api.conns.accepted.Load(),
			APIConnsMaxOpen: api.conns.maxOpen.Load(),
			Backend:         chat.requests.Load(),
			BackendContact:  chat.withContact.Load(),
			BackendUser:     chat.withUser.Load(),
			BackendConns:    chat.conns.accepted.Load(),
		})
	}
}

func newServer(h http.Handler, conns *connCounter) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if conns != nil {
		srv.ConnState = conns.track
	}
	return srv
}

func main() {
	backendAddr := flag.String("backend", "127.0.0.1:0", "listen address of the chat backend")
	apiAddr := flag.String("api", "127.0.0.1:0", "listen address of the identity API")
	statsAddr := flag.String("stats", "127.0.0.1:0", "listen address of the stats endpoint")
	latency := flag.Duration("latency", 50*time.Millisecond, "how long the identity API takes to answer")
	flag.Parse()

	chat := &backend{}
	api := &identityAPI{latency: *latency}

	errc := make(chan error, 3)
	for _, s := range []struct {
		name, addr string
		srv        *http.Server
	}{
		{"backend", *backendAddr, newServer(chat, &chat.conns)},
		{"identity API", *apiAddr, newServer(api, &api.conns)},
		{"stats", *statsAddr, newServer(statsHandler(api, chat), nil)},
	} {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			log.Fatalf("servers: %s: %v", s.name, err)
		}
		log.Printf("servers: %s listening on %s", s.name, ln.Addr())
		go func() {
			if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", s.name, err)
			}
		}()
	}
	log.Printf("servers: identity API answers after %s", *latency)
	log.Fatalf("servers: %v", <-errc)
}
