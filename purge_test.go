package customauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestPurgeMarks(t *testing.T) {
	clk := newClock()
	m := newPurgeMarks()
	alice := verdict{kind: verdictVerified, identity: newIdentity(nil, []byte(`{"id":"2"}`), "B@Example.com")}
	rejected := verdict{kind: verdictRejected}
	const ttl = time.Minute
	before := clk.Now()
	clk.advance(time.Second)
	at := clk.Now()
	after := at.Add(time.Second)

	if m.hides("shop", "t1", alice, before, ttl) {
		t.Fatal("hidden without any mark")
	}
	m.set(markRef{bot: "shop", scope: purgeToken, digest: tokenDigest("shop", "t1"), at: at})
	m.set(markRef{bot: "shop", scope: purgeContact, digest: contactDigest("shop", "b@example.com"), at: at})
	m.set(markRef{bot: "news", scope: purgeBot, at: at})
	for _, tc := range []struct {
		bot, token string
		res        verdict
		stored     time.Time
		hidden     bool
	}{
		{"shop", "t1", rejected, before, true},  // the token's mark, whatever the verdict
		{"shop", "t1", rejected, after, false},  // reached after the purge
		{"shop", "t2", alice, before, true},     // the contact's mark, compared case-insensitively
		{"shop", "t2", rejected, before, false}, // a rejection has no contact
		{"shop", "t2", alice, after, false},
		{"other", "t1", alice, before, false}, // marks belong to their bot
		{"news", "t9", rejected, before, true},
		{"news", "t9", alice, after, false},
	} {
		if got := m.hides(tc.bot, tc.token, tc.res, tc.stored, ttl); got != tc.hidden {
			t.Errorf("%s %s stored %v: hidden = %v, want %v", tc.bot, tc.token, tc.stored.Sub(at), got, tc.hidden)
		}
	}

	// A later mark of the same thing wins; an earlier one changes nothing.
	m.set(markRef{bot: "news", scope: purgeBot, at: after.Add(time.Second)})
	m.set(markRef{bot: "news", scope: purgeBot, at: before})
	if !m.hides("news", "t9", alice, after, ttl) {
		t.Error("a later mark of the bot did not apply")
	}

	// Marks are forgotten once no servable verdict can predate them, and the floor
	// keeps hiding what they hid.
	clk.advance(minMarkKeep + time.Hour)
	m.set(markRef{bot: "shop", scope: purgeToken, digest: tokenDigest("shop", "t3"), at: clk.Now()})
	m.mu.RLock()
	bots, remaining, floor := len(m.bots), len(m.order)-m.head, m.floor
	m.mu.RUnlock()
	if bots != 1 || remaining != 1 {
		t.Errorf("after the TTLs passed: %d bots and %d marks remembered, want 1 and 1", bots, remaining)
	}
	if !floor.Equal(after.Add(time.Second)) {
		t.Errorf("floor = %v, want the latest forgotten mark", floor)
	}
	if !m.hides("shop", "t1", rejected, before, 2*time.Hour) {
		t.Error("a verdict that a forgotten mark hid is served")
	}
}

func TestPurgeMarksBounded(t *testing.T) {
	clk := newClock()
	m := newPurgeMarks()
	first := clk.Now()
	for i := range maxMarks + 10 {
		m.set(markRef{bot: "shop", scope: purgeToken, digest: tokenDigest("shop", fmt.Sprint(i)), at: first.Add(time.Duration(i))})
	}
	m.mu.RLock()
	remembered, floor := len(m.bots["shop"].tokens), m.floor
	m.mu.RUnlock()
	if remembered != maxMarks {
		t.Errorf("%d marks remembered, want %d", remembered, maxMarks)
	}
	if want := first.Add(9); !floor.Equal(want) {
		t.Errorf("floor = %v, want the tenth mark's time %v", floor, want)
	}
	res := verdict{kind: verdictRejected}
	if !m.hides("shop", "0", res, first, time.Minute) {
		t.Error("the verdict of a forgotten mark is served")
	}
	if !m.hides("shop", fmt.Sprint(maxMarks+9), res, first.Add(maxMarks), time.Minute) {
		t.Error("the newest mark is lost")
	}
}

// sameContactAPI makes tokens that start with "alice" all belong to contact 2.
func sameContactAPI(t *testing.T) *identityAPI {
	api := newIdentityAPI(t)
	api.setAnswer(func(w http.ResponseWriter, body map[string]string) bool {
		if !strings.HasPrefix(body["access_token"], "alice") {
			return false
		}
		io.WriteString(w, `{"data":`+aliceData+`}`)
		return true
	})
	return api
}

func purgeNow(t *testing.T, handlers []*Handler, req purgeRequest) purgeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), purgeTimeout)
	defer cancel()
	result, err := purgeHandlers(ctx, handlers, req)
	if err != nil {
		t.Fatal(err)
	}
	return result
}

func ptr(s string) *string { return &s }

// TestPurgeAcrossGateways purges on one gateway and checks that the other, which
// learns of it only through the shared cache, asks the API again on its next request.
func TestPurgeAcrossGateways(t *testing.T) {
	r := startRedis(t)
	// Each case has its own database, and each gateway its own link: the URLs name
	// the database differently.
	purgeAcrossGateways(t, func(i int) (string, string) {
		return r.url(fmt.Sprintf("/%d", i+1)), r.url(fmt.Sprintf("/0%d", i+1))
	})
}

// purgeAcrossGateways runs the cases of TestPurgeAcrossGateways on two gateways whose
// shared caches the i-th case's urls name.
func purgeAcrossGateways(t *testing.T, urls func(i int) (first, second string)) {
	for i, tc := range []struct {
		name   string
		req    purgeRequest
		purged []string // tokens whose next request calls the API
		kept   []string // tokens still served from a cache
		local  int      // verdicts removed by key on the purging gateway
	}{
		{"token", purgeRequest{Bot: "shop", Token: ptr("alice-token")}, []string{"alice-token"}, []string{"alice-phone-token", "wrong-token"}, 1},
		{"contact", purgeRequest{Bot: "shop", Contact: ptr("2")}, []string{"alice-token", "alice-phone-token"}, []string{"wrong-token"}, 0},
		{"bot", purgeRequest{Bot: "shop"}, []string{"alice-token", "alice-phone-token", "wrong-token"}, nil, 0},
		{"another bot", purgeRequest{Bot: "news"}, nil, []string{"alice-token", "alice-phone-token", "wrong-token"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := sameContactAPI(t)
			firstURL, secondURL := urls(i)
			first := fleetHandler(t, api, firstURL, &Bot{})
			second := fleetHandler(t, api, secondURL, &Bot{})
			tokens := []string{"alice-token", "alice-phone-token", "wrong-token"}
			for _, token := range tokens {
				verify(t, first, token)
				verify(t, second, token)
			}
			if n := api.calls.Load(); n != 3 {
				t.Fatalf("%d API calls before the purge, want 3", n)
			}

			result := purgeNow(t, []*Handler{first}, tc.req)
			if result.Purged != tc.local || result.Gateways == nil || *result.Gateways != 2 {
				t.Errorf("result = %d purged, %d gateways; want %d and 2", result.Purged, *result.Gateways, tc.local)
			}
			for _, token := range tc.kept {
				verify(t, second, token)
			}
			if n := api.calls.Load(); n != 3 {
				t.Errorf("%d API calls for tokens the purge does not cover, want 3", n)
			}
			for i, token := range tc.purged {
				verify(t, second, token)
				if n := api.calls.Load(); n != int64(4+i) {
					t.Errorf("%s on the other gateway: %d API calls, want %d", token, n, 4+i)
				}
			}
			// The verdicts reached since are shared again.
			for _, token := range tokens {
				verify(t, first, token)
				verify(t, second, token)
			}
			if n := api.calls.Load(); n != int64(3+len(tc.purged)) {
				t.Errorf("%d API calls after the visitors were verified again, want %d", n, 3+len(tc.purged))
			}
		})
	}
}

// TestPurgeWithoutSharedCache acts on every cache of the process, and covers
// verdicts that forwarded fields put under other keys, and bots that `bot *` serves.
func TestPurgeWithoutSharedCache(t *testing.T) {
	api := sameContactAPI(t)
	marks := newPurgeMarks()
	listed := provision(t, &Handler{CacheSize: gatewayCacheSize(), marks: marks,
		Bots: map[string]*Bot{"shop": {AuthURL: api.URL, Forward: []string{"user_id"}}}})
	other := provision(t, &Handler{CacheSize: gatewayCacheSize(), marks: marks,
		Bots: map[string]*Bot{"*": {AuthURL: api.URL}}})
	withField := func(bot, token string) *http.Request { return widgetRequest(bot, token, "", "X-User-Id", "2") }
	send := func(h *Handler, r *http.Request) {
		t.Helper()
		if got := serve(t, h, r); got.placeholder("http.custom_auth.status") != "verified" {
			t.Fatalf("not verified: %s", got.placeholder("http.custom_auth.reason"))
		}
	}
	send(listed, withField("shop", "alice-token"))
	send(listed, widgetRequest("shop", "alice-token", ""))
	send(other, widgetRequest("tenant-7", "alice-token", ""))
	send(other, widgetRequest("tenant-8", "alice-token", "")) // `bot *` caches by its own settings
	calls := func(want int64, why string) {
		t.Helper()
		if n := api.calls.Load(); n != want {
			t.Errorf("%d API calls, want %d: %s", n, want, why)
		}
	}
	calls(3, "one per key before the purge")

	// In the second handler, shop is served by `bot *`: the purge acts on the
	// verdicts of `*`, under whichever id they were asked.
	result := purgeNow(t, []*Handler{listed, other}, purgeRequest{Bot: "shop", Token: ptr("alice-token")})
	if result.Purged != 2 || result.Gateways != nil {
		t.Errorf("result = %d purged, %v gateways; want 2 (shop's key without fields, and `*`'s) and none", result.Purged, result.Gateways)
	}
	send(listed, withField("shop", "alice-token"))
	calls(4, "the verdict with a forwarded field is covered by the mark")
	send(other, widgetRequest("tenant-7", "alice-token", ""))
	calls(5, "a token purged through a bot that `bot *` serves is asked again for every id it serves")
	send(other, widgetRequest("tenant-8", "alice-token", ""))
	calls(5, "the verdict reached since is shared by the ids `bot *` serves")
	send(listed, widgetRequest("shop", "alice-token", ""))
	calls(6, "the purged token is asked again for the listed bot")

	purgeNow(t, []*Handler{listed, other}, purgeRequest{Bot: "tenant-7"})
	send(other, widgetRequest("tenant-8", "alice-token", ""))
	calls(7, "a purge of a bot that `bot *` serves purges `*`")
	send(listed, widgetRequest("shop", "alice-token", ""))
	calls(7, "a listed bot is not `*`")

	purgeNow(t, []*Handler{listed, other}, purgeRequest{Bot: "*", Contact: ptr("2")})
	send(other, widgetRequest("tenant-9", "alice-token", ""))
	calls(8, `{"bot": "*"} purges every id that bot * serves`)
	send(listed, widgetRequest("shop", "alice-token", ""))
	calls(8, "a listed bot is not `*`")
}

func TestPurgeEndpointInput(t *testing.T) {
	for _, tc := range []struct {
		method, body string
		code         int
		want         string
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed, "use POST"},
		{http.MethodPost, "", http.StatusBadRequest, "request body is empty"},
		{http.MethodPost, `{"token": "t"}`, http.StatusBadRequest, `"bot" is required`},
		{http.MethodPost, `{"bot": ""}`, http.StatusBadRequest, `"bot" is required`},
		{http.MethodPost, `{"bot": "b", "tokn": "t"}`, http.StatusBadRequest, `unknown field "tokn"`},
		{http.MethodPost, `{"bot": "b", "token": "t", "contact": "2"}`, http.StatusBadRequest, "not both"},
		{http.MethodPost, `{"bot": "b", "token": ""}`, http.StatusBadRequest, `"token" is empty`},
		{http.MethodPost, `{"bot": "b", "contact": " "}`, http.StatusBadRequest, `"contact" is empty`},
		{http.MethodPost, `{"bot": "b"} {"bot": "c"}`, http.StatusBadRequest, "one JSON object"},
		{http.MethodPost, `{"bot": "` + strings.Repeat("b", maxPurgeRequestSize) + `"}`, http.StatusRequestEntityTooLarge, "over"},
		{http.MethodPost, `{"bot": "b", "token": "t"}`, http.StatusOK, `"purged":0`},
	} {
		rec := httptest.NewRecorder()
		err := new(PurgeAPI).handlePurge(rec, httptest.NewRequest(tc.method, "/custom-auth/purge", strings.NewReader(tc.body)))
		code, text := http.StatusOK, rec.Body.String()
		if apiErr, ok := errors.AsType[caddy.APIError](err); ok {
			code, text = apiErr.HTTPStatus, apiErr.Err.Error()
		} else if err != nil {
			t.Fatalf("%s %.40q: %v is not an API error", tc.method, tc.body, err)
		}
		if code != tc.code || !strings.Contains(text, tc.want) {
			t.Errorf("%s %.40q: %d %s, want %d with %q", tc.method, tc.body, code, text, tc.code, tc.want)
		}
	}
}

// TestPurgeReachesLateGateways: a gateway that was not listening when a purge was
// announced (it started later, or its connection was down) reads it from the purge log
// before it reads any verdict from the shared cache.
func TestPurgeReachesLateGateways(t *testing.T) {
	r := startRedis(t)
	api := sameContactAPI(t)
	first := fleetHandler(t, api, r.url("/5"), &Bot{})
	verify(t, first, "alice-token")
	verify(t, first, "alice-phone-token")
	result := purgeNow(t, []*Handler{first}, purgeRequest{Bot: "shop", Contact: ptr("2")})
	if *result.Gateways != 1 {
		t.Fatalf("%d gateways confirmed, want 1", *result.Gateways)
	}
	verify(t, first, "alice-phone-token") // asked again, and shared
	if n := api.calls.Load(); n != 3 {
		t.Fatalf("%d API calls, want 3", n)
	}

	late := fleetHandler(t, api, r.url("/05"), &Bot{})
	verify(t, late, "alice-phone-token")
	if n := api.calls.Load(); n != 3 {
		t.Errorf("%d API calls, want 3: a verdict reached after the purge was not shared", n)
	}
	verify(t, late, "alice-token")
	if n := api.calls.Load(); n != 4 {
		t.Errorf("%d API calls, want 4: the late gateway served a purged verdict from the shared cache", n)
	}
}

// TestPurgeAcksCountEachGatewayOnce: a purge that reaches a gateway twice (announced,
// and delivered again meanwhile) is acknowledged twice, but counts once; an
// acknowledgement without a sender (an earlier version) counts each time.
func TestPurgeAcksCountEachGatewayOnce(t *testing.T) {
	fp := &fleetPurges{acks: map[string]*purgeAcks{}}
	acks, stop := fp.expectAcks("p1")
	defer stop()
	for _, msg := range []string{"p1 gw-a", "p1 gw-a", "p1 gw-b", "p2 gw-c", "p1"} {
		fp.acked(msg)
	}
	if n := acks.count.Load(); n != 3 {
		t.Errorf("%d acknowledgements counted, want 3 (gw-a, gw-b, and one without a sender)", n)
	}
}

// TestForgetRecordedDeliversAgain: after a new subscription the purges of the last
// purgeLogSlack are due again, and after the server lost its data every one kept is.
func TestForgetRecordedDeliversAgain(t *testing.T) {
	clk := newClock()
	fp := &fleetPurges{now: clk.Now}
	old := &takenPurge{notice: purgeNotice{At: clk.Now().Add(-2 * purgeLogSlack).UnixNano()}}
	recent := &takenPurge{notice: purgeNotice{At: clk.Now().UnixNano()}}
	fp.taken = []*takenPurge{old, recent}
	for _, p := range fp.taken {
		p.recorded.Store(true)
	}
	fp.forgetRecorded(false)
	if !old.recorded.Load() || recent.recorded.Load() {
		t.Errorf("a new subscription: old due %v, recent due %v; want only the recent one", !old.recorded.Load(), !recent.recorded.Load())
	}
	fp.forgetRecorded(true)
	if old.recorded.Load() {
		t.Error("the server lost its data: an old purge is not due again")
	}
}
