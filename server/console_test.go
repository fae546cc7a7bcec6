package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestConsoleMounted checks that serve answers /console/ with the embedded
// page and its policy, and that the API's JSON answers stay the API's.
func TestConsoleMounted(t *testing.T) {
	srv := MustRunServer(t, testConfig(t))
	resp, err := http.Get(srv.URL + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "js/app.js") {
		t.Fatalf("GET /console/: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("GET /console/: CSP %q", csp)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noFollow.Get(srv.URL + "/console")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("GET /console: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Only GET and HEAD: the API's catch-all answers the rest in JSON.
	resp, err = http.Post(srv.URL+"/console/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("POST /console/: %d %s, want a JSON 405", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
