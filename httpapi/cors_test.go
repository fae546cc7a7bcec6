package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestCheckOrigins(t *testing.T) {
	for _, ok := range [][]string{
		nil,
		{},
		{"*"},
		{"app.example.com"},
		{"localhost:5173", "127.0.0.1:*"},
		{"https://app.example.com", "https://*.example.com", "http://localhost:*"},
		{"app-[0-9].example.com"},
	} {
		if err := CheckOrigins(ok); err != nil {
			t.Errorf("CheckOrigins(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []struct {
		patterns []string
		want     string
	}{
		{[]string{""}, "want a host"},
		{[]string{" app.example.com"}, "want a host"},
		{[]string{"a.example.com,b.example.com"}, "want a host"},
		{[]string{"https://app.example.com/"}, "no path"},
		{[]string{"app.example.com/x"}, "no path"},
		{[]string{"https://"}, "no path"},
		{[]string{"://app.example.com"}, "scheme"},
		{[]string{"*://app.example.com"}, "scheme"},
		{[]string{"app.example.com", "app-[.example.com"}, "syntax error in pattern"},
	} {
		err := CheckOrigins(bad.patterns)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("CheckOrigins(%q) = %v, want an error with %q", bad.patterns, err, bad.want)
		}
	}
}

// originCases are shared with the server's test, which checks that the
// WebSocket endpoint (coder/websocket's own check) agrees.
func TestOriginAllowed(t *testing.T) {
	patterns := []string{"app.example.com", "*.trusted.test", "https://secure.example.com", "localhost:*"}
	for _, c := range []struct {
		origin string
		want   bool
	}{
		{"https://app.example.com", true},
		{"http://app.example.com", true}, // a host pattern takes any scheme
		{"https://APP.Example.com", true},
		{"https://app.example.com:8443", false},
		{"https://evil.example.com", false},
		{"https://a.trusted.test", true},
		{"https://trusted.test", false},
		{"https://secure.example.com", true},
		{"http://secure.example.com", false}, // a pattern with a scheme takes that scheme only
		{"http://localhost:5173", true},
		{"http://localhost", false},
		{"http://sync.example.com:7420", true}, // the server's own host
		{"null", false},
		{"", false},
		{"%zz", false},
	} {
		if got := OriginAllowed(c.origin, "sync.example.com:7420", patterns); got != c.want {
			t.Errorf("OriginAllowed(%q) = %v, want %v", c.origin, got, c.want)
		}
	}
	if !OriginAllowed("https://anything.example", "sync.example.com", []string{"*"}) {
		t.Error(`"*" does not allow every origin`)
	}
}

func TestCORS(t *testing.T) {
	var reached []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = append(reached, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	h := CORS([]string{"https://app.example.com"}, []string{"/v1/write", "/v1/sync/{session}/queue", "/v1/write"}, next)
	do := func(method, path, origin string, hdr map[string]string) *httptest.ResponseRecorder {
		t.Helper()
		reached = nil
		r := httptest.NewRequest(method, "http://sync.example.com"+path, nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	preflight := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type,x-device-id"}

	t.Run("preflight from an allowed origin", func(t *testing.T) {
		w := do("OPTIONS", "/v1/write", "https://app.example.com", preflight)
		if w.Code != http.StatusNoContent || len(reached) != 0 {
			t.Fatalf("status %d, reached %v; want 204 answered by CORS", w.Code, reached)
		}
		hd := w.Header()
		if got := hd.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
			t.Errorf("Allow-Origin %q", got)
		}
		for _, want := range []string{"Authorization", "Content-Type", "X-Device-Id", "X-Device-Platform", "X-Device-App-Version", "Last-Event-ID"} {
			if !slices.Contains(strings.Split(hd.Get("Access-Control-Allow-Headers"), ", "), want) {
				t.Errorf("Allow-Headers %q lacks %s", hd.Get("Access-Control-Allow-Headers"), want)
			}
		}
		if got := hd.Get("Access-Control-Allow-Methods"); got != "GET, POST" {
			t.Errorf("Allow-Methods %q", got)
		}
		if hd.Get("Access-Control-Allow-Credentials") != "" {
			t.Error("credentials allowed: devices send tokens, not cookies")
		}
		if hd.Get("Access-Control-Max-Age") == "" {
			t.Error("no Max-Age")
		}
		if v := hd.Values("Vary"); !slices.Contains(v, "Origin") || !slices.Contains(v, "Access-Control-Request-Headers") {
			t.Errorf("Vary %q", v)
		}
	})
	t.Run("request from an allowed origin", func(t *testing.T) {
		w := do("GET", "/v1/sync/s1/queue", "https://app.example.com", nil)
		if w.Code != http.StatusTeapot || len(reached) != 1 {
			t.Fatalf("status %d, reached %v; want the handler's answer", w.Code, reached)
		}
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
			t.Errorf("Allow-Origin %q", got)
		}
		if got := w.Header().Get("Access-Control-Expose-Headers"); !strings.Contains(got, "Retry-After") {
			t.Errorf("Expose-Headers %q", got)
		}
		if !slices.Contains(w.Header().Values("Vary"), "Origin") {
			t.Errorf("Vary %q", w.Header().Values("Vary"))
		}
	})
	t.Run("another origin is refused", func(t *testing.T) {
		for _, method := range []string{"OPTIONS", "POST"} {
			w := do(method, "/v1/write", "https://evil.example.com", preflight)
			if w.Code != http.StatusForbidden || len(reached) != 0 {
				t.Fatalf("%s: status %d, reached %v; want 403", method, w.Code, reached)
			}
			if w.Header().Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s: Allow-Origin given to another origin", method)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != "forbidden" || !strings.Contains(body.Error.Message, "allowed_origins") {
				t.Errorf("%s: body %s (%v)", method, w.Body, err)
			}
		}
	})
	t.Run("the server's own origin", func(t *testing.T) {
		w := do("POST", "/v1/write", "http://sync.example.com", nil)
		if w.Code != http.StatusTeapot {
			t.Fatalf("status %d", w.Code)
		}
	})
	t.Run("untouched", func(t *testing.T) {
		for _, c := range []struct{ method, path, origin string }{
			{"POST", "/v1/write", ""},                             // not a browser
			{"OPTIONS", "/v1/write", ""},                          // not a browser
			{"OPTIONS", "/v1/publish", "https://app.example.com"}, // not a device path
			{"GET", "/v1/bizzes", "https://evil.example.com"},     // the API: same-origin only, by the browser
			{"GET", "/v1/sync/s1/queue/x", "https://evil.example.com"},
		} {
			w := do(c.method, c.path, c.origin, preflight)
			if w.Code != http.StatusTeapot || len(w.Header()) != 0 {
				t.Errorf("%s %s from %q: status %d, headers %v; want the handler's answer alone", c.method, c.path, c.origin, w.Code, w.Header())
			}
		}
	})
	t.Run("no origins: the handler itself", func(t *testing.T) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("OPTIONS", "/v1/write", nil)
		r.Header.Set("Origin", "https://app.example.com")
		r.Header.Set("Access-Control-Request-Method", "POST")
		CORS([]string{}, []string{"/v1/write"}, next).ServeHTTP(w, r)
		if w.Code != http.StatusTeapot || w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("status %d, headers %v", w.Code, w.Header())
		}
	})
}

// The device paths are the routes a device token opens: none of them takes
// the API key, which must never be called from a page on another origin.
func TestDevicePaths(t *testing.T) {
	s := New(Config{APIKey: "k", DeviceRoutes: deviceRoutes()})
	paths := s.DevicePaths()
	for _, want := range []string{"/v1/sync/reconcile", "/v1/write", "/v1/sync", "/v1/sync/{session}/queue", "/v2/sync/start", "/v1/events"} {
		if !slices.Contains(paths, want) {
			t.Errorf("DevicePaths() = %q, lacks %s", paths, want)
		}
	}
	for _, rt := range s.routes {
		if rt.auth && slices.Contains(paths, rt.path) {
			t.Errorf("%s %s takes the API key but is a device path", rt.method, rt.path)
		}
	}
}
