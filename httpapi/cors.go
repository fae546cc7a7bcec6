package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
)

// The CORS answers of the device endpoints: what a browser page on an
// allowed origin may send (the SDK's headers, and those of the CRM Sync API
// clients and of EventSource), and may read.
const (
	corsAllowMethods  = "GET, POST"
	corsAllowHeaders  = "Authorization, Content-Type, X-Device-Id, X-Device-Platform, X-Device-App-Version, X-Basecrm-Device-UUID, Last-Event-ID"
	corsExposeHeaders = "Retry-After, WWW-Authenticate"
	corsMaxAge        = "600"
)

// CheckOrigins checks a list of allowed origin patterns: each is a host
// (app.example.com, localhost:5173) or a scheme and host
// (https://app.example.com), in which * stands for any run of characters
// and ? for one, as path.Match has them; "*" alone allows every origin.
func CheckOrigins(patterns []string) error {
	for _, p := range patterns {
		if p == "" || strings.TrimSpace(p) != p || strings.ContainsAny(p, " \t,") {
			return fmt.Errorf("origin pattern %q: want a host such as app.example.com, or a scheme and host such as https://*.example.com", p)
		}
		host := p
		if scheme, rest, ok := strings.Cut(p, "://"); ok {
			if scheme == "" || strings.ContainsAny(scheme, "/*?[") {
				return fmt.Errorf("origin pattern %q: the scheme before :// must be spelled out, such as https", p)
			}
			host = rest
		}
		if host == "" || strings.Contains(host, "/") {
			return fmt.Errorf("origin pattern %q: an origin is a scheme and a host, with no path (no /)", p)
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("origin pattern %q: %w", p, err)
		}
	}
	return nil
}

// OriginAllowed tells whether a browser page at origin (the Origin header)
// may use the server reached at host (the request's Host): the same host
// always may, and others when a pattern matches. A pattern is matched,
// without regard to case, against the origin's host, or against its
// scheme://host when the pattern has a scheme; coder/websocket matches the
// WebSocket endpoint's origins the same way.
func OriginAllowed(origin, host string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// CORS lets browser pages on the allowed origins call the endpoints at
// paths (http.ServeMux path patterns, without a method): it answers their
// preflight requests (OPTIONS) itself, and adds Access-Control-Allow-Origin
// to the answers of their requests. A request from another origin to those
// paths is refused with 403 forbidden, as the WebSocket endpoint refuses it.
// Requests without an Origin header (not from a browser) and other paths go
// to next untouched. No origins gives next itself: browsers then allow only
// pages of the server's own origin to read its answers.
//
// Credentials are not allowed: devices send their token in the
// Authorization header (or the query), never in a cookie.
func CORS(origins, paths []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	match := http.NewServeMux()
	seen := make(map[string]bool)
	for _, p := range paths {
		if !seen[p] {
			seen[p] = true
			match.Handle(p, http.NotFoundHandler())
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		// Match the path alone: the method of a preflight is OPTIONS.
		probe := &http.Request{Method: http.MethodGet, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := match.Handler(probe); pattern == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
		}
		if !OriginAllowed(origin, r.Host, origins) {
			writeJSON(w, http.StatusForbidden, apiclient.ErrorResponse{Error: syncpoint.Error{
				Code:    syncpoint.CodeForbidden,
				Message: "origin " + origin + " is not allowed: the server's allowed_origins (--allowed-origins) do not list it",
			}})
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if preflight {
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}
