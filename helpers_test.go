package customauth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Contacts the test identity API knows, by access token.
const (
	aliceData = `{"id":"2","name":"Nguyễn Văn B","email":"B@Example.com","phone_number":"0912345678","country_code":"+84","avatar":"https://cdn.example.com/b.png","label":"VIP","metadata":{"order_id":"ORD-5578XZ","order_quantity":3}}`
	crlfData  = `{"id":"7","name":"Eve\r\nX-Contact-Id: 1","email":"eve@example.com"}`
	numData   = `{"id":42,"name":"Num","vip":true}`
)

// identityAPI is a real HTTP server that plays the customer's identity API. What it
// answers depends on the access token.
type identityAPI struct {
	*httptest.Server
	calls atomic.Int64

	mu       sync.Mutex
	bodies   []map[string]string
	headers  []http.Header
	release  chan struct{} // closed to let "hang" requests finish
	answerFn func(w http.ResponseWriter, body map[string]string) bool
}

func newIdentityAPI(t testing.TB) *identityAPI {
	api := &identityAPI{release: make(chan struct{})}
	api.Server = httptest.NewServer(http.HandlerFunc(api.serve))
	t.Cleanup(func() {
		api.unblock()
		api.Close()
	})
	return api
}

func (api *identityAPI) unblock() {
	api.mu.Lock()
	defer api.mu.Unlock()
	select {
	case <-api.release:
	default:
		close(api.release)
	}
}

func (api *identityAPI) serve(w http.ResponseWriter, r *http.Request) {
	api.calls.Add(1)
	raw, _ := io.ReadAll(r.Body)
	var body map[string]string
	_ = json.Unmarshal(raw, &body)
	api.mu.Lock()
	api.bodies = append(api.bodies, body)
	api.headers = append(api.headers, r.Header.Clone())
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
		select {
		case <-r.Context().Done():
		case <-api.release:
		}
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

func (api *identityAPI) lastBody(t testing.TB) map[string]string {
	t.Helper()
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.bodies) == 0 {
		t.Fatal("the identity API was not called")
	}
	return api.bodies[len(api.bodies)-1]
}

func (api *identityAPI) lastHeader(t testing.TB) http.Header {
	t.Helper()
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.headers) == 0 {
		t.Fatal("the identity API was not called")
	}
	return api.headers[len(api.headers)-1]
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
	got.code = rec.Code
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
