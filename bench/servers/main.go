// Command servers runs the two upstreams of the benchmark in one process: a chat
// backend stand-in that answers "ok", and an identity API stand-in that knows one access
// token. Both listen on the addresses given by flags (loopback only in bench/run.sh).
//
// The backend echoes the identity headers it receives (X-Contact-Id from custom_auth,
// X-User-Id from forward_auth) as X-Echo-* response headers, on every request and for
// every site alike, so the benchmark can prove that a request was really verified.
//
// GET /stats on the identity API's listener reports the calls the identity API got and
// the requests the backend got (all of them, with X-Contact-Id: 2, with X-User-Id: 2), so
// the benchmark can report how many API calls each request cost and check that every
// request of a run reached the backend verified.
package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// verifiedAnswer is what the identity API answers for the known token.
var verifiedAnswer = []byte(`{"status":true,"data":{"id":"2","name":"Bench","email":"b@example.com"}}`)

// rejectedAnswer is what it answers for any other token.
var rejectedAnswer = []byte(`{"status":false,"message":"invalid access token"}`)

var okBody = []byte("ok")

// backend stands in for the chat backend.
type backend struct {
	requests    atomic.Int64
	withContact atomic.Int64
	withUser    atomic.Int64
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	h := w.Header()
	if v := r.Header.Get("X-Contact-Id"); v != "" {
		if v == "2" {
			b.withContact.Add(1)
		}
		h.Set("X-Echo-Contact-Id", v)
	}
	if v := r.Header.Get("X-User-Id"); v != "" {
		if v == "2" {
			b.withUser.Add(1)
		}
		h.Set("X-Echo-User-Id", v)
	}
	h.Set("Content-Type", "text/plain")
	w.Write(okBody)
}

// identityAPI stands in for the customer's identity endpoint (POST /ca, for custom_auth)
// and for a forward_auth endpoint (GET /check).
type identityAPI struct {
	backend     *backend
	token       []byte
	caCalls     atomic.Int64
	checkCalls  atomic.Int64
	otherCalls  atomic.Int64
	rejectCalls atomic.Int64
}

func (a *identityAPI) knows(token string) bool {
	return subtle.ConstantTimeCompare([]byte(token), a.token) == 1
}

func (a *identityAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/ca" && r.Method == http.MethodPost:
		a.caCalls.Add(1)
		a.serveCA(w, r)
	case r.URL.Path == "/check":
		a.checkCalls.Add(1)
		if !a.knows(r.Header.Get("X-Access-Token")) {
			a.rejectCalls.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-User-Id", "2")
		w.WriteHeader(http.StatusOK)
	case r.URL.Path == "/stats" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "ca %d\ncheck %d\nrejected %d\nother %d\n",
			a.caCalls.Load(), a.checkCalls.Load(), a.rejectCalls.Load(), a.otherCalls.Load())
		fmt.Fprintf(w, "backend %d\nbackend_contact %d\nbackend_user %d\n",
			a.backend.requests.Load(), a.backend.withContact.Load(), a.backend.withUser.Load())
	default:
		a.otherCalls.Add(1)
		http.NotFound(w, r)
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
	w.Header().Set("Content-Type", "application/json")
	if !a.knows(body.AccessToken) {
		a.rejectCalls.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		w.Write(rejectedAnswer)
		return
	}
	w.Write(verifiedAnswer)
}

func serve(addr string, h http.Handler) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	return srv, ln, nil
}

func main() {
	backendAddr := flag.String("backend", "127.0.0.1:0", "listen address of the chat backend")
	apiAddr := flag.String("api", "127.0.0.1:0", "listen address of the identity API")
	tokenFile := flag.String("token-file", "", "file holding the one access token the identity API accepts")
	flag.Parse()

	if *tokenFile == "" {
		log.Fatal("servers: -token-file is required")
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil || len(token) == 0 {
		log.Fatalf("servers: reading -token-file: %v", err)
	}
	chat := &backend{}
	api := &identityAPI{backend: chat, token: token}

	errc := make(chan error, 2)
	for _, s := range []struct {
		name, addr string
		h          http.Handler
	}{
		{"backend", *backendAddr, chat},
		{"identity API", *apiAddr, api},
	} {
		srv, ln, err := serve(s.addr, s.h)
		if err != nil {
			log.Fatalf("servers: %s: %v", s.name, err)
		}
		log.Printf("servers: %s listening on %s", s.name, ln.Addr())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", s.name, err)
			}
		}()
	}
	log.Fatalf("servers: %v", <-errc)
}
