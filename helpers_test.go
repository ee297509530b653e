package customauth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Contacts the test identity API knows, by access token.
const (
	aliceData = `{"id":"2","name":"Nguyễn Văn B","email":"B@Example.com","phone_number":"0912345678","country_code":"+84","avatar":"https://cdn.example.com/b.png","label":"VIP","metadata":{"order_id":"ORD-5578XZ","order_quantity":3}}`
	crlfData  = `{"id":"7","name":"Eve\r\nX-Contact-Id: 1","email":"eve@example.com"}`
	numData   = `{"id":42,"name":"Num","vip":true}`
)

// recordingServer is a real HTTP server on 127.0.0.1 that records every request it
// receives and answers through a handler func. The tests' identity, bots, whitelist
// and JWKS APIs and their chat backend are thin wrappers around it.
type recordingServer struct {
	*httptest.Server
	calls atomic.Int64 // requests received

	// mu guards the records, and the state that a wrapper's answers read.
	mu       sync.Mutex
	requests []recordedRequest // every request, in the order received
	headers  headerLog         // each request's headers
	paths    []string          // each request's escaped path
	hang     chan struct{}     // when set, holdWhileHanging holds requests until it is closed

	// hung receives one value per request that started waiting on hang, and
	// abandoned one per such request whose client gave up first. A value that no
	// test reads is dropped rather than blocking the server.
	hung, abandoned chan struct{}
}

// recordedRequest is a request a recordingServer received.
type recordedRequest struct {
	*http.Request        // a clone taken once the body was read, so with its trailers
	body          []byte // the body, read in full
}

// headerLog is the headers of each request received, in order.
type headerLog []http.Header

// Get reads a header of the last request received, "" before any.
func (l headerLog) Get(name string) string {
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1].Get(name)
}

// newRecordingServer starts a server that records each request, then has answer
// answer it with its body read.
func newRecordingServer(t testing.TB, answer func(w http.ResponseWriter, r *http.Request, body []byte)) *recordingServer {
	s := &recordingServer{hung: make(chan struct{}, 100), abandoned: make(chan struct{}, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer(w, r, s.record(r))
	}))
	t.Cleanup(func() {
		s.release()
		s.Close()
	})
	return s
}

// record counts a request and records it, and returns its body.
func (s *recordingServer) record(r *http.Request) []byte {
	s.calls.Add(1)
	body, _ := io.ReadAll(r.Body)
	clone := r.Clone(r.Context())
	s.mu.Lock()
	s.requests = append(s.requests, recordedRequest{clone, body})
	s.headers = append(s.headers, clone.Header)
	s.paths = append(s.paths, r.URL.EscapedPath())
	s.mu.Unlock()
	return body
}

// lastRequest is the last request received; the test fails if there was none.
func (s *recordingServer) lastRequest(t testing.TB, server string) recordedRequest {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		t.Fatalf("%s was not called", server)
	}
	return s.requests[len(s.requests)-1]
}

// hangRequests makes holdWhileHanging hold requests until release, which closes the
// channel returned.
func (s *recordingServer) hangRequests() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = make(chan struct{})
	return s.hang
}

// release lets the requests held go on, and those to come pass.
func (s *recordingServer) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hang != nil {
		close(s.hang)
		s.hang = nil
	}
}

// holdWhileHanging holds a request while hangRequests is in force, and reports whether
// it may be answered: false if its client gave up first.
func (s *recordingServer) holdWhileHanging(r *http.Request) bool {
	s.mu.Lock()
	hang := s.hang
	s.mu.Unlock()
	if hang == nil {
		return true
	}
	s.signal(s.hung)
	select {
	case <-hang:
		return true
	case <-r.Context().Done():
		s.signal(s.abandoned)
		return false
	}
}

// signal sends a value on hung or abandoned unless it is full.
func (s *recordingServer) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// identityAPI plays the customer's identity API. What it answers depends on the
// access token.
type identityAPI struct {
	*recordingServer
	// release is closed, by unblock, to let "hang" requests finish.
	release <-chan struct{}

	// Guarded by mu.
	bodies   []map[string]string // each request's JSON body
	answerFn func(w http.ResponseWriter, body map[string]string) bool
}

func newIdentityAPI(t testing.TB) *identityAPI {
	api := new(identityAPI)
	api.recordingServer = newRecordingServer(t, api.serve)
	api.release = api.hangRequests()
	return api
}

func (api *identityAPI) unblock() { api.recordingServer.release() }

func (api *identityAPI) serve(w http.ResponseWriter, r *http.Request, raw []byte) {
	var body map[string]string
	_ = json.Unmarshal(raw, &body)
	api.mu.Lock()
	api.bodies = append(api.bodies, body)
	answerFn := api.answerFn
	api.mu.Unlock()
	if answerFn != nil && answerFn(w, body) {
		return
	}

	w.Header().Set("Content-Type", "application/json")
	switch body["access_token"] {
	case "alice-token":
		io.WriteString(w, `{"status":true,"message":"ok","data":`+aliceData+`}`)
	case "crlf-token":
		io.WriteString(w, `{"data":`+crlfData+`}`)
	case "number-token":
		io.WriteString(w, `{"data":`+numData+`}`)
	case "no-store-token":
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, `{"data":{"id":"3"}}`)
	case "max-age-token":
		w.Header().Set("Cache-Control", "max-age=10")
		io.WriteString(w, `{"data":{"id":"4"}}`)
	case "status-false-token":
		io.WriteString(w, `{"status":false,"message":"expired"}`)
	case "forbidden-token":
		w.WriteHeader(http.StatusForbidden)
	case "not-found-token":
		w.WriteHeader(http.StatusNotFound)
	case "boom-token":
		w.WriteHeader(http.StatusInternalServerError)
	case "teapot-token":
		w.WriteHeader(http.StatusTeapot)
	case "garbage-token":
		io.WriteString(w, `{"data":`)
	case "no-data-token":
		io.WriteString(w, `{"status":true}`)
	case "array-data-token":
		io.WriteString(w, `{"data":[1,2]}`)
	case "no-id-token":
		io.WriteString(w, `{"data":{"name":"Nobody"}}`)
	case "empty-id-token":
		io.WriteString(w, `{"data":{"id":""}}`)
	case "huge-token":
		io.WriteString(w, `{"data":{"id":"5","padding":"`+strings.Repeat("x", maxAnswerSize)+`"}}`)
	case "hang-token":
		api.holdWhileHanging(r)
	default:
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"status":false,"message":"invalid token"}`)
	}
}

// setAnswer lets a test answer requests itself; answerFn returns false to leave a
// request to the default answers.
func (api *identityAPI) setAnswer(answerFn func(w http.ResponseWriter, body map[string]string) bool) {
	api.mu.Lock()
	api.answerFn = answerFn
	api.mu.Unlock()
}

// callsFor counts the calls that carried a token.
func (api *identityAPI) callsFor(token string) int {
	api.mu.Lock()
	defer api.mu.Unlock()
	n := 0
	for _, body := range api.bodies {
		if body["access_token"] == token {
			n++
		}
	}
	return n
}

func (api *identityAPI) lastBody(t testing.TB) map[string]string {
	t.Helper()
	var body map[string]string
	_ = json.Unmarshal(api.lastRequest(t, "the identity API").body, &body)
	return body
}

func (api *identityAPI) lastHeader(t testing.TB) http.Header {
	t.Helper()
	return api.lastRequest(t, "the identity API").Header
}

// botsAPI plays the chat backend's bot settings API.
type botsAPI struct {
	*recordingServer

	// Guarded by mu.
	settings map[string]string // by bot id; absent: 404
	anyBot   string            // when set, the settings of every bot not in settings
	down     bool
}

func newBotsAPI(t testing.TB) *botsAPI {
	b := &botsAPI{settings: map[string]string{}}
	b.recordingServer = newRecordingServer(t, b.serve)
	return b
}

func (b *botsAPI) serve(w http.ResponseWriter, r *http.Request, _ []byte) {
	if !b.holdWhileHanging(r) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/bots/")
	settings, known := b.settings[id]
	if !known && b.anyBot != "" {
		settings, known = b.anyBot, true
	}
	if !ok || !known {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	io.WriteString(w, settings)
}

func (b *botsAPI) set(id, settings string) {
	b.mu.Lock()
	b.settings[id] = settings
	b.mu.Unlock()
}

func (b *botsAPI) setDown(down bool) {
	b.mu.Lock()
	b.down = down
	b.mu.Unlock()
}

// botsSource is the bots_url config of the tests' handlers.
func botsSource(bots *botsAPI) *BotsSource {
	return &BotsSource{
		URL:     bots.URL + "/bots/",
		Headers: map[string]string{"X-Api-Key": "backend-key"},
		TTL:     caddy.Duration(time.Minute),
		// The test APIs listen on 127.0.0.1, where tenant URLs may not go otherwise.
		AllowPrivate: true,
	}
}

// whitelistAPI answers a whitelist.
type whitelistAPI struct {
	*recordingServer

	// Guarded by mu.
	status int
	body   string
}

func newWhitelistAPI(t testing.TB, body string) *whitelistAPI {
	w := &whitelistAPI{status: http.StatusOK, body: body}
	w.recordingServer = newRecordingServer(t, w.serve)
	return w
}

func (w *whitelistAPI) serve(rw http.ResponseWriter, r *http.Request, _ []byte) {
	w.mu.Lock()
	status, body := w.status, w.body
	w.mu.Unlock()
	if !w.holdWhileHanging(r) {
		return
	}
	rw.WriteHeader(status)
	io.WriteString(rw, body)
}

func (w *whitelistAPI) answer(status int, body string) {
	w.mu.Lock()
	w.status, w.body = status, body
	w.mu.Unlock()
}

// jwksServer plays the customer's JWKS endpoint.
type jwksServer struct {
	*recordingServer

	// Guarded by mu.
	keys []signingKey
	down bool
}

func newJWKSServer(t testing.TB, keys ...signingKey) *jwksServer {
	s := &jwksServer{keys: keys}
	s.recordingServer = newRecordingServer(t, s.serve)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, _ *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	jwks := make([]string, len(s.keys))
	for i, k := range s.keys {
		jwks[i] = k.jwk
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"keys":[`+strings.Join(jwks, ",")+`]}`)
}

// publish replaces the keys the server lists.
func (s *jwksServer) publish(keys ...signingKey) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func (s *jwksServer) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// backend is a chat backend that records what it received.
type backend struct {
	*recordingServer

	// Guarded by mu.
	calls int // requests received, which the Caddy tests read under mu
	taken int // requests received up to the last one received returned
}

func newBackend(t testing.TB) *backend {
	b := new(backend)
	b.recordingServer = newRecordingServer(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		b.mu.Lock()
		b.calls++
		b.mu.Unlock()
		io.WriteString(w, "backend")
	})
	return b
}

// received returns the last request the backend got and forgets it.
func (b *backend) received(t testing.TB) (*http.Request, string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.taken == len(b.requests) {
		t.Fatal("the backend got no request")
	}
	b.taken = len(b.requests)
	last := b.requests[b.taken-1]
	return last.Request, string(last.body)
}

// provision provisions a handler as Caddy would, and cleans it up with the test.
func provision(t testing.TB, h *Handler) *Handler {
	t.Helper()
	if h.logger == nil {
		h.logger = zap.NewNop() // tests that read the log replace it
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := h.Provision(ctx); err != nil {
		cancel()
		t.Fatalf("provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		cancel()
		t.Fatalf("validate: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := h.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return h
}

func dur(d time.Duration) *caddy.Duration {
	v := caddy.Duration(d)
	return &v
}

// served is what the next handler saw of a request.
type served struct {
	called bool
	header http.Header
	body   string
	method string
	uri    string
	repl   *caddy.Replacer
	err    error
	code   int
	answer *httptest.ResponseRecorder // what the handler itself wrote
}

// serve sends a request through the handler the way Caddy would, with a replacer in
// its context, and records what the next handler received.
func serve(t testing.TB, h *Handler, r *http.Request) served {
	t.Helper()
	repl := caddyhttp.NewTestReplacer(r)
	var got served
	got.repl = repl
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		got.called = true
		got.header = r.Header.Clone()
		got.method = r.Method
		got.uri = r.RequestURI
		body, _ := io.ReadAll(r.Body)
		got.body = string(body)
		w.WriteHeader(http.StatusOK)
		return nil
	})
	rec := httptest.NewRecorder()
	got.err = h.ServeHTTP(rec, r, next)
	got.code, got.answer = rec.Code, rec
	if herr, ok := got.err.(caddyhttp.HandlerError); ok {
		got.code = herr.StatusCode
	}
	return got
}

func (s served) placeholder(key string) string {
	v, _ := s.repl.GetString(key)
	return v
}

// widgetRequest is a chat-widget request with the default headers.
func widgetRequest(bot, token, origin string, extra ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/chat/messages?x=1", strings.NewReader(`{"text":"hi"}`))
	if bot != "" {
		r.Header.Set("X-Bot-Id", bot)
	}
	if token != "" {
		r.Header.Set("X-Access-Token", token)
	}
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		r.Header.Add(extra[i], extra[i+1])
	}
	return r
}

// preflightRequest is a browser's CORS preflight for a widget request.
func preflightRequest() *http.Request {
	r := widgetRequest("", "", "https://shop.example.com")
	r.Method = http.MethodOptions
	r.Header.Set("Access-Control-Request-Method", "POST")
	r.Header.Set("Access-Control-Request-Headers", "x-bot-id,x-access-token")
	return r
}

// within waits, up to a bound far above what the work needs, for a channel to
// deliver, and fails the test if it does not.
func within[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("gave up waiting: %s", what)
		panic("unreachable")
	}
}

// outcomeAsync serves a request in the background and delivers its outcome.
func outcomeAsync(t *testing.T, h *Handler, r *http.Request) <-chan string {
	done := make(chan string, 1)
	go func() {
		got := serve(t, h, r)
		done <- got.placeholder("http.custom_auth.status") + "/" + got.placeholder("http.custom_auth.reason")
	}()
	return done
}

// botOutcome is the status/reason of a widget request for a bot, from
// https://shop.example.com unless another origin is given.
func botOutcome(t *testing.T, h *Handler, bot, token string, origin ...string) string {
	t.Helper()
	got := serve(t, h, widgetRequest(bot, token, cmp.Or(append(origin, "https://shop.example.com")...)))
	return got.placeholder("http.custom_auth.status") + "/" + got.placeholder("http.custom_auth.reason")
}

// eventually waits, within a bound, for a background refresh to show its effect.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// The Caddy integration tests' harness. caddytest binds fixed ports (admin 2999, HTTP
// 9080), so no such test runs in parallel.

const testSignKey = "integration-test-signing-key-0123456789"

// testGlobalOptions are the global options of every test Caddy: the ports caddytest
// expects. Caddy skips loading a config identical to the running one, so a test that
// reloads changes the grace period.
func testGlobalOptions(gracePeriodNS int, more string) string {
	return fmt.Sprintf(`
	{
		skip_install_trust
		admin localhost:2999
		http_port 9080
		https_port 9443
		grace_period %dns%s
	}`, gracePeriodNS, more)
}

func startCaddy(t *testing.T, api *identityAPI, be *backend) *caddytest.Tester {
	tester := caddytest.NewTester(t)
	tester.InitServer(testGlobalOptions(1, `
		servers {
			expected_underscore_headers x_contact_*
			expected_dot_headers x.contact.*
		}`)+fmt.Sprintf(`
	http://localhost:9080 {
		handle /strict/* {
			custom_auth {
				on_fail reject
				bot shop {
					auth_url %[1]s/ca
					whitelist shop.example.com
				}
			}
			reverse_proxy %[2]s
		}
		handle {
			custom_auth {
				sign_key %[3]s
				bot shop {
					auth_url %[1]s/ca
					auth_header Authorization "Bearer api-key"
					forward user_id email
					whitelist shop.example.com *.shop.example.org
					cache_ttl 0
					negative_ttl 0
				}
				bot quiet {
					off
				}
			}
			reverse_proxy %[2]s {
				header_up X-Custom-Auth-Status {http.custom_auth.status}
				header_up X-Custom-Auth-Reason {http.custom_auth.reason}
			}
		}
	}
	`, api.URL, strings.TrimPrefix(be.URL, "http://"), testSignKey), "caddyfile")
	return tester
}

// spoofedHeaders are every way a client might try to pass a contact header.
var spoofedHeaders = map[string]string{
	"X-Contact-Id":          "999",
	"X-CONTACT-NAME":        "Mallory",
	"X_Contact_Email":       "mallory@evil.example",
	"x_contact_label":       "ADMIN",
	"X.Contact.Phone":       "0000",
	"x.contact.metadata":    `{"role":"admin"}`,
	"X-Contact-Identify-By": "email",
	"X-Contact-Assertion":   "forged.jwt.token",
}

func spoof(r *http.Request) {
	for name, value := range spoofedHeaders {
		r.Header[name] = []string{value} // exactly as spelled, not canonicalised
	}
}

// gatewayRequest is a widget request for bot shop through the test Caddy.
func gatewayRequest(path, token, origin string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, "http://localhost:9080"+path, nil)
	req.Header.Set("X-Bot-Id", "shop")
	req.Header.Set("X-Access-Token", token)
	req.Header.Set("Origin", origin)
	return req
}

// caddyBinary builds ./caddymodule once: Caddy with its standard modules and this one.
var caddyBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "custom-auth-caddy")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "caddy")
	out, err := exec.Command("go", "build", "-o", bin, "./caddymodule").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./caddymodule: %v\n%s", err, out)
	}
	return bin, nil
})

func runCaddy(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin, err := caddyBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}
