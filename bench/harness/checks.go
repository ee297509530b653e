package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/custom-auth/custom_auth/bench/fixture"
	"github.com/custom-auth/custom_auth/contact"
)

// answer is what one probe got: the status and body, and the request headers the
// backend received (nil when the request did not reach the backend).
type answer struct {
	status  int
	body    string
	backend http.Header
}

// probe sends one chat-widget request with token and the extra headers, asking the
// backend to echo what it received.
func (s *stack) probe(ctx context.Context, st site, token string, extra http.Header) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url(st), nil)
	if err != nil {
		return answer{}, err
	}
	maps.Copy(req.Header, extra)
	req.Header.Set("X-Bot-Id", "bench")
	req.Header.Set("X-Access-Token", token)
	req.Header.Set("Origin", "https://shop.example.com")
	req.Header.Set("X-Bench-Echo", "1")
	resp, err := s.client.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("site %s: %w", st.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return answer{}, fmt.Errorf("site %s: %w", st.name, err)
	}
	a := answer{status: resp.StatusCode, body: string(body)}
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(body, &a.backend); err != nil {
			return a, fmt.Errorf("site %s: the backend's echo: %w", st.name, err)
		}
	}
	return a, nil
}

// contactHeaders are the headers of h that the backend would read as the contact.
func contactHeaders(h http.Header) http.Header {
	c := http.Header{}
	for name, values := range h {
		if contact.HasPrefix(name, contact.DefaultPrefix) {
			c[name] = values
		}
	}
	return c
}

// checkSite checks that a site does what the report says it does: the backend gets the
// identity from the sites that verify, never from a wrong token, and the same contact
// from H as from a verified custom_auth request.
func (s *stack) checkSite(ctx context.Context, st site) error {
	valid, err := s.probe(ctx, st, verifiedToken, nil)
	if err != nil {
		return err
	}
	if valid.status != http.StatusOK {
		return fmt.Errorf("site %s: a valid request got status %d: %.80q", st.name, valid.status, valid.body)
	}
	if st.kind == respondOK {
		if valid.body != "ok" {
			return fmt.Errorf("site %s: answered %.80q, want ok", st.name, valid.body)
		}
		return nil
	}
	if valid.backend == nil {
		return fmt.Errorf("site %s: the request did not reach the backend: %.80q", st.name, valid.body)
	}
	got := contactHeaders(valid.backend)
	switch st.kind {
	case plainProxy:
		if len(got) != 0 {
			return fmt.Errorf("site %s: the backend got contact headers %v", st.name, got)
		}
	case forwardAuth:
		if id := valid.backend.Get("X-User-Id"); id != contactOfToken {
			return fmt.Errorf("site %s: the backend got X-User-Id %q from forward_auth, want %q", st.name, id, contactOfToken)
		}
	case customAuth, staticContact:
		if want := fixture.ContactHeaders(contactOfToken); !equalHeaders(got, want) {
			return fmt.Errorf("site %s: the backend got contact headers %v, want %v", st.name, got, want)
		}
		if valid.backend.Get("X-Access-Token") != "" {
			if st.kind == staticContact {
				return fmt.Errorf("site %s: the access token reached the backend", st.name)
			}
			// The SPEC has custom_auth remove the token (unless pass_token); a module that
			// does not yet is worth a warning in the report, not a failed benchmark.
			s.tokenPassedOn[st.name] = true
		}
	}
	return s.checkWrongToken(ctx, st)
}

// checkWrongToken checks what a site does with a token the identity API rejects and a
// forged contact header: forward_auth refuses, custom_auth passes it on without any
// contact header.
func (s *stack) checkWrongToken(ctx context.Context, st site) error {
	if st.kind != forwardAuth && st.kind != customAuth {
		return nil
	}
	wrong, err := s.probe(ctx, st, "wrong-"+verifiedToken, http.Header{"X-Contact-Id": {"9"}})
	if err != nil {
		return err
	}
	if st.kind == forwardAuth {
		if wrong.status != http.StatusUnauthorized {
			return fmt.Errorf("site %s: a wrong token got status %d, want 401", st.name, wrong.status)
		}
		return nil
	}
	if wrong.status != http.StatusOK || wrong.backend == nil {
		return fmt.Errorf("site %s: a wrong token did not pass on (status %d)", st.name, wrong.status)
	}
	if c := contactHeaders(wrong.backend); len(c) != 0 {
		return fmt.Errorf("site %s: a wrong token reached the backend with contact headers %v", st.name, c)
	}
	return nil
}

// checkAPICalls checks that a custom_auth site with a cache serves a repeated visitor
// from it, and one without asks the identity API every time.
func (s *stack) checkAPICalls(ctx context.Context, st site) error {
	if st.kind != customAuth {
		return nil
	}
	const repeats = 3
	before, err := s.upstreamStats(ctx)
	if err != nil {
		return err
	}
	for range repeats {
		a, err := s.probe(ctx, st, verifiedToken, nil)
		if err != nil {
			return err
		}
		if a.backend.Get("X-Contact-Id") != contactOfToken {
			return fmt.Errorf("site %s: a repeated request was not verified", st.name)
		}
	}
	after, err := s.upstreamStats(ctx)
	if err != nil {
		return err
	}
	want := int64(repeats)
	if st.cached {
		want = 0
	}
	if calls := after.Sub(before).CA; calls != want {
		return fmt.Errorf("site %s: %d identity API calls for %d repeated requests, want %d", st.name, calls, repeats, want)
	}
	return nil
}

// checkSites runs every check on the stack's sites.
func (s *stack) checkSites(ctx context.Context) error {
	for _, st := range s.sites {
		if _, err := s.waitVerified(ctx, st); err != nil {
			return err
		}
		if err := s.checkSite(ctx, st); err != nil {
			return err
		}
		if err := s.checkAPICalls(ctx, st); err != nil {
			return err
		}
	}
	return s.checkSameRequest(ctx)
}

// checkSameRequest checks that H hands the backend the very request a verified
// custom_auth site hands on (but for the access token), so that C/H compares like with
// like.
func (s *stack) checkSameRequest(ctx context.Context) error {
	var h, c *site
	for i := range s.sites {
		switch {
		case s.sites[i].kind == staticContact:
			h = &s.sites[i]
		case s.sites[i].kind == customAuth && c == nil:
			c = &s.sites[i]
		}
	}
	if h == nil || c == nil {
		return nil
	}
	fromC, err := s.probe(ctx, *c, verifiedToken, nil)
	if err != nil {
		return err
	}
	fromH, err := s.probe(ctx, *h, verifiedToken, nil)
	if err != nil {
		return err
	}
	// H removes the access token as the SPEC says custom_auth does; a custom_auth that
	// still hands it on is reported by checkSite, so the token is not compared here.
	fromC.backend.Del("X-Access-Token")
	// X-Forwarded-Host names the site's own port.
	fromC.backend.Del("X-Forwarded-Host")
	fromH.backend.Del("X-Forwarded-Host")
	if !equalHeaders(fromC.backend, fromH.backend) {
		return fmt.Errorf("site %s hands the backend %v, site %s %v: they must be the same", h.name, fromH.backend, c.name, fromC.backend)
	}
	return nil
}

// waitVerified waits, at most 15 s, until a valid request to a custom_auth site is
// verified: right after a load run its circuit breaker may still be open (10 s by
// default) and the site falls back. It returns how long the site fell back.
func (s *stack) waitVerified(ctx context.Context, st site) (time.Duration, error) {
	if st.kind != customAuth {
		return 0, nil
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		a, err := s.probe(ctx, st, verifiedToken, nil)
		if err != nil {
			return 0, err
		}
		if a.status == http.StatusOK && a.backend.Get("X-Contact-Id") == contactOfToken {
			if attempt == 0 {
				return 0, nil
			}
			return time.Since(start), nil
		}
		if time.Since(start) > 15*time.Second {
			return 0, fmt.Errorf("site %s: still not verified after 15 s (status %d, X-Contact-Id %q)\n%s",
				st.name, a.status, a.backend.Get("X-Contact-Id"), s.logTails())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func equalHeaders(a, b http.Header) bool { return maps.EqualFunc(a, b, slices.Equal) }
