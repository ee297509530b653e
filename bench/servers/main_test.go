package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/bench/fixture"
)

// startServer serves h like main does, on a loopback port.
func startServer(t *testing.T, h http.Handler, conns *connCounter) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config = newServer(h, conns)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestIdentityAPIAnswersEveryBenchToken(t *testing.T) {
	api := &identityAPI{}
	url := startServer(t, api, &api.conns)

	status, body := post(t, url+"/ca", `{"access_token":"bench-1000000042"}`)
	if want := string(fixture.AppendAnswer(nil, "1000000042")); status != 200 || body != want {
		t.Errorf("bench-1000000042: %d %s, want 200 %s", status, body, want)
	}
	if status, _ := post(t, url+"/ca", `{"access_token":"wrong-bench-2"}`); status != http.StatusUnauthorized {
		t.Errorf("wrong-bench-2: %d, want 401", status)
	}

	req, _ := http.NewRequest(http.MethodGet, url+"/check", nil)
	req.Header.Set("X-Access-Token", "bench-7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-User-Id") != "7" {
		t.Errorf("/check bench-7: %d, X-User-Id %q", resp.StatusCode, resp.Header.Get("X-User-Id"))
	}
	if api.caCalls.Load() != 2 || api.checkCalls.Load() != 1 || api.rejectCalls.Load() != 1 {
		t.Errorf("calls: ca %d check %d rejected %d", api.caCalls.Load(), api.checkCalls.Load(), api.rejectCalls.Load())
	}
}

func TestIdentityAPILatency(t *testing.T) {
	api := &identityAPI{latency: 80 * time.Millisecond}
	url := startServer(t, api, &api.conns)
	start := time.Now()
	if status, _ := post(t, url+"/ca", `{"access_token":"bench-1"}`); status != 200 {
		t.Fatalf("status %d", status)
	}
	if took := time.Since(start); took < api.latency {
		t.Errorf("answered after %s, before the latency of %s", took, api.latency)
	}
}

// Connections are counted as the server accepts them, and the most open at once.
func TestConnCounter(t *testing.T) {
	api := &identityAPI{}
	url := startServer(t, api, &api.conns)
	addr := strings.TrimPrefix(url, "http://")

	// Two connections held open until the end, one request each.
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// Then three requests on one kept-alive connection.
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for range 3 {
		resp, err := client.Get(url + "/nothing")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if got := api.conns.accepted.Load(); got != 3 {
		t.Errorf("accepted %d connections, want 3", got)
	}
	if got := api.conns.maxOpen.Load(); got != 3 {
		t.Errorf("at most %d open, want 3", got)
	}
}

func TestBackendEchoesAndCounts(t *testing.T) {
	chat := &backend{}
	url := startServer(t, chat, &chat.conns)
	get := func(h http.Header) (string, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header = h
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Header.Get("Content-Type"), string(b)
	}
	if _, body := get(http.Header{"X-Contact-Id": {"2"}}); body != "ok" {
		t.Errorf("body %q, want ok", body)
	}
	ct, body := get(http.Header{"X-User-Id": {"2"}, "X-Bench-Echo": {"1"}})
	var echoed http.Header
	if ct != "application/json" || json.Unmarshal([]byte(body), &echoed) != nil || echoed.Get("X-User-Id") != "2" {
		t.Errorf("echo: %s %s", ct, body)
	}
	if chat.requests.Load() != 2 || chat.withContact.Load() != 1 || chat.withUser.Load() != 1 {
		t.Errorf("counted %d requests, %d with contact, %d with user", chat.requests.Load(), chat.withContact.Load(), chat.withUser.Load())
	}
}
