package customauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

// identifier answers who a visitor's access token belongs to. The identity API client
// implements it, botIdentifier adds a bot's verify_jwt, and the cache wraps them.
type identifier interface {
	identify(ctx context.Context, b *botSettings, req identityRequest) verdict
}

// botIdentifier asks each bot's own source of verdicts: its verifier of
// customer-signed tokens (verify_jwt), or its identity API.
type botIdentifier struct {
	api identifier
}

func (bi botIdentifier) identify(ctx context.Context, b *botSettings, req identityRequest) verdict {
	if b.jwt != nil {
		return b.jwt.verify(ctx, req.token, b.identifyBy)
	}
	return bi.api.identify(ctx, b, req)
}

// identityRequest is what the visitor gave us: the token and the fields they supplied.
type identityRequest struct {
	token  string
	fields fieldValues
}

// primaryMismatch is why a verified identity is not the visitor's: the visitor claimed
// a primary key (identify_by's field) that is not the verified one. Nil when the claim
// matches or there is none.
func (b *botSettings) primaryMismatch(fields fieldValues, id identity) error {
	if claimed, ok := fields.get(b.primaryField); ok && !b.samePrimary(claimed, id.primary()) {
		return fmt.Errorf("the API says %s %q, the visitor claimed %q", b.identifyBy, id.primary(), claimed)
	}
	return nil
}

// samePrimary compares the visitor's claimed primary key with the API's.
func (b *botSettings) samePrimary(claimed, verified string) bool {
	if b.identifyBy == "email" {
		return strings.EqualFold(claimed, verified)
	}
	return claimed == verified
}

// maxAnswerSize is the largest identity API answer read; a larger one is an error.
const maxAnswerSize = 1 << 20

// identityClient calls a bot's identity API, with the bot's HTTP client.
type identityClient struct {
	// config is the config's context: a config being unloaded ends its calls.
	config  context.Context
	metrics *metrics
}

// newAPIClient is the HTTP client of the operator's URLs: the APIs of bots listed in
// the config, and bots_url. It goes through the environment's proxy, if any.
func newAPIClient() *http.Client {
	return newHTTPClient(newAPITransport(http.ProxyFromEnvironment, nil))
}

// newHTTPClient is a client for identity, whitelist, settings and JWKS APIs. A call
// made for a traced request is a span of that request's trace (tracedTransport).
func newHTTPClient(transport http.RoundTripper) *http.Client {
	return &http.Client{
		Transport: newTracedTransport(transport),
		// A redirect would turn the POST into a GET to somewhere else; an identity
		// API that redirects is misconfigured, and its 3xx is an error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// newAPITransport is the transport of API calls. proxy may be nil (no proxy);
// control, when not nil, sees every address dialled, after name resolution, and may
// refuse it.
func newAPITransport(proxy func(*http.Request) (*url.URL, error), control func(ctx context.Context, network, address string, c syscall.RawConn) error) *http.Transport {
	return &http.Transport{
		Proxy: proxy,
		DialContext: (&net.Dialer{
			Timeout:        5 * time.Second,
			KeepAlive:      30 * time.Second,
			ControlContext: control,
		}).DialContext,
		ForceAttemptHTTP2: true,
		// Idle connections kept per API: as many as the calls in flight at once. With
		// 64 (bench/, latency scenario: 50 ms API, a new visitor per request), 256
		// concurrent visitors opened 4,476 connections to the API in 10 s and p99 was
		// 299 ms; each idle connection costs a few KB.
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// identify makes one call within the bot's bounds: its calls in flight and its
// circuit breaker.
func (c *identityClient) identify(ctx context.Context, b *botSettings, req identityRequest) verdict {
	if !b.callSlots.acquire() {
		return inconclusive(errTooManyCalls)
	}
	defer b.callSlots.release()
	done, ok := b.breaker.allow()
	if !ok {
		return failure(errBreakerOpen, false)
	}
	inFlight := c.metrics.identityCallsInFlight(b.id)
	inFlight.Inc()
	start := time.Now()
	res := c.call(ctx, b, req)
	res.apiTime = time.Since(start)
	inFlight.Dec()
	done(res.health)
	c.metrics.observeAPI(b.id, res)
	return res
}

var (
	errBreakerOpen  = errors.New("identity API skipped after repeated errors (circuit breaker open)")
	errTooManyCalls = errors.New("identity API skipped: too many calls to it in flight for this bot")
)

func (c *identityClient) call(parent context.Context, b *botSettings, req identityRequest) verdict {
	ctx, cancel := context.WithTimeout(parent, b.timeout)
	defer cancel()
	// A config being unloaded ends its calls at once rather than at their timeout.
	defer context.AfterFunc(c.config, cancel)()

	body, err := requestBody(b, req)
	if err != nil {
		return inconclusive(err)
	}
	reply, err := callAPI(ctx, b.client, http.MethodPost, b.authURL, b.authHeaders, body, maxAnswerSize)
	switch {
	case errors.Is(err, errTooLarge):
		return failure(fmt.Errorf("identity API %w", err), false)
	case err != nil:
		return c.unfinished(parent, fmt.Errorf("calling identity API: %w", err))
	}
	res := parseAnswer(reply.code, reply.body, b.identifyBy)
	res.apiStatus = reply.code
	res.noStore, res.maxAge = cacheControl(reply.header.Get("Cache-Control"))
	return res
}

// unfinished is a call that got no complete answer: the API's fault (connection
// refused, timeout) unless the gateway cut it short, because the config is being
// unloaded, the caller stopped waiting or max_in_flight was full; that tells nothing
// about the API.
func (c *identityClient) unfinished(parent context.Context, err error) verdict {
	if c.config.Err() != nil || parent.Err() != nil || errors.Is(err, errAllSlotsBusy) {
		return inconclusive(err)
	}
	return failure(err, true)
}

// requestBody is the API's JSON body: the token and the forwarded fields the visitor
// supplied.
func requestBody(b *botSettings, req identityRequest) ([]byte, error) {
	body := make(map[string]string, 1+len(req.fields))
	body["access_token"] = req.token
	for _, f := range req.fields {
		if b.forward[f.name] {
			body[f.name] = f.value
		}
	}
	return json.Marshal(body)
}

// identityAnswer is the identity API's JSON answer.
type identityAnswer struct {
	Status json.RawMessage `json:"status"`
	Data   json.RawMessage `json:"data"`
}

// parseAnswer turns the API's status code and body into a verdict.
func parseAnswer(code int, body []byte, identifyBy string) verdict {
	switch {
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusNotFound:
		return verdict{kind: verdictRejected, maxAge: -1}
	case code >= 500:
		return failure(fmt.Errorf("identity API answered %d", code), true)
	case code < 200 || code > 299:
		return failure(fmt.Errorf("identity API answered %d", code), false)
	}
	var a identityAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return failure(fmt.Errorf("identity API answer is not a JSON object: %w", err), false)
	}
	switch status := string(bytes.TrimSpace(a.Status)); status {
	case "", "true":
	case "false":
		return verdict{kind: verdictRejected, maxAge: -1}
	default:
		return failure(fmt.Errorf("identity API answer's status is %s, not a JSON boolean", status), false)
	}
	var data contact.Data
	if len(a.Data) == 0 || a.Data[0] != '{' || json.Unmarshal(a.Data, &data) != nil {
		return failure(errors.New("identity API answer has no data object"), false)
	}
	raw := a.Data
	if compacted, err := compactJSON(raw); err == nil {
		raw = compacted
	}
	id, err := identityOf(data, raw, identifyBy)
	if err != nil {
		return failure(fmt.Errorf("identity API answer: %w", err), false)
	}
	return verdict{kind: verdictVerified, identity: id, maxAge: -1}
}

// cacheControl reads the directives of an answer's Cache-Control that bound caching.
func cacheControl(v string) (noStore bool, maxAge time.Duration) {
	maxAge = -1
	for _, directive := range strings.Split(v, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
		switch strings.ToLower(name) {
		case "no-store":
			noStore = true
		case "max-age":
			if secs, err := strconv.ParseUint(strings.Trim(value, `"`), 10, 64); err == nil {
				// A TTL beyond what a Duration holds caps nothing.
				maxAge = time.Duration(min(secs, uint64(math.MaxInt64/int64(time.Second)))) * time.Second
			}
		}
	}
	return noStore, maxAge
}
