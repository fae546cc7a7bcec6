package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/httpapi"
	"github.com/syncpoint/syncpoint/wire"
)

// dialFrom opens a WebSocket to the server as a browser page at origin
// would ("" sends no Origin, as a native app); it reports the HTTP status of
// a refused upgrade.
func dialFrom(t *testing.T, base, origin string) (ok bool, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hdr := http.Header{}
	if origin != "" {
		hdr.Set("Origin", origin)
	}
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/connect", &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolJSON}, HTTPHeader: hdr})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial from %q: %v", origin, err)
		}
		return false, resp.StatusCode
	}
	c.CloseNow()
	return true, http.StatusSwitchingProtocols
}

// request sends a browser-like request and returns the answer (body closed).
func request(t *testing.T, method, url, origin string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

var preflightWrite = map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type,x-device-id"}

// TestAllowedOrigins: with AllowedOrigins, the WebSocket endpoint and the
// HTTP device endpoints take browser pages of the listed origins (and the
// server's own) and refuse others, by the same rule; the business API
// gives no other origin CORS headers.
func TestAllowedOrigins(t *testing.T) {
	patterns := []string{"https://app.example.com", "*.trusted.test", "localhost:*"}
	cfg := testConfig(t)
	cfg.AllowedOrigins = patterns
	r := MustRunServer(t, cfg)
	host := strings.TrimPrefix(r.URL, "http://")

	for _, origin := range []string{
		"https://app.example.com", "http://app.example.com", "https://APP.example.com", "https://evil.example.com",
		"https://a.trusted.test", "https://trusted.test", "http://localhost:5173", "http://localhost",
		"http://" + host, "null",
	} {
		want := httpapi.OriginAllowed(origin, host, patterns)
		ok, status := dialFrom(t, r.URL, origin)
		if ok != want {
			t.Errorf("WebSocket from %s: upgraded %v (HTTP %d), want %v", origin, ok, status, want)
		}
		if !ok && status != http.StatusForbidden {
			t.Errorf("WebSocket from %s refused with HTTP %d, want 403", origin, status)
		}
		resp := request(t, "OPTIONS", r.URL+"/v1/write", origin, preflightWrite)
		wantStatus := map[bool]int{true: http.StatusNoContent, false: http.StatusForbidden}[want]
		if resp.StatusCode != wantStatus {
			t.Errorf("preflight of /v1/write from %s: HTTP %d, want %d", origin, resp.StatusCode, wantStatus)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); (got == origin) != want {
			t.Errorf("preflight of /v1/write from %s: Allow-Origin %q", origin, got)
		}
	}
	if ok, _ := dialFrom(t, r.URL, ""); !ok {
		t.Error("a WebSocket without Origin (not a browser) was refused")
	}

	const app = "https://app.example.com"
	// Every HTTP device endpoint: its answers (here 401, no token) are
	// readable by the page, so the SDK sees why.
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/sync"}, {"POST", "/v1/sync/reconcile"}, {"POST", "/v1/write"}, {"GET", "/v1/events?biz=chat"},
		{"POST", "/v1/sync/start"}, {"GET", "/v1/sync/s1/queue"}, {"POST", "/v1/sync/ack"}, {"POST", "/v2/sync/start"},
	} {
		if resp := request(t, "OPTIONS", r.URL+c.path, app, map[string]string{"Access-Control-Request-Method": c.method}); resp.StatusCode != http.StatusNoContent {
			t.Errorf("preflight of %s: HTTP %d", c.path, resp.StatusCode)
		}
		resp := request(t, c.method, r.URL+c.path, app, map[string]string{"X-Device-Id": "d1"})
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Access-Control-Allow-Origin") != app {
			t.Errorf("%s %s from %s: HTTP %d, Allow-Origin %q; want 401 readable by the page", c.method, c.path, app, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	// The business API: no CORS for any origin.
	for _, path := range []string{"/v1/publish", "/v1/bizzes", "/v1/channels/chat/user:u1"} {
		resp := request(t, "OPTIONS", r.URL+path, app, preflightWrite)
		if resp.StatusCode == http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight of %s: HTTP %d, Allow-Origin %q; want no CORS", path, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	if resp := request(t, "GET", r.URL+"/v1/bizzes", app, map[string]string{"Authorization": "Bearer " + testAPIKey}); resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("GET /v1/bizzes from %s: HTTP %d, Allow-Origin %q", app, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// TestOriginsByDefault: without AllowedOrigins, the WebSocket endpoint
// takes every origin (the token is in the hello, not in a cookie) and the
// HTTP device endpoints send no CORS headers (same-origin pages only); an
// empty list makes the WebSocket same-origin only too.
func TestOriginsByDefault(t *testing.T) {
	r := MustRunServer(t, testConfig(t))
	if ok, status := dialFrom(t, r.URL, "https://anywhere.example"); !ok {
		t.Errorf("default: WebSocket from another origin refused (HTTP %d)", status)
	}
	resp := request(t, "OPTIONS", r.URL+"/v1/write", "https://anywhere.example", preflightWrite)
	if resp.StatusCode == http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("default: preflight of /v1/write answered HTTP %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	cfg := testConfig(t)
	cfg.AllowedOrigins = []string{}
	same := MustRunServer(t, cfg)
	u, _ := url.Parse(same.URL)
	if ok, status := dialFrom(t, same.URL, "https://anywhere.example"); ok || status != http.StatusForbidden {
		t.Errorf("empty list: WebSocket from another origin: upgraded %v, HTTP %d; want 403", ok, status)
	}
	if ok, _ := dialFrom(t, same.URL, "http://"+u.Host); !ok {
		t.Error("empty list: WebSocket from the server's own origin refused")
	}
}
