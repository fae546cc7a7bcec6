package console

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func mustServe(tb testing.TB) *http.ServeMux {
	tb.Helper()
	h, err := New()
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	return mux
}

func get(mux http.Handler, path string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec
}

// checkHeaders checks the security headers every console answer carries.
func checkHeaders(t *testing.T, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	h := rec.Header()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", path, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: CSP %q allows inline or eval", path, csp)
	}
	if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", path, got)
	}
	if got := h.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("%s: Referrer-Policy %q", path, got)
	}
}

func TestIndex(t *testing.T) {
	mux := mustServe(t)
	rec := get(mux, "/console/")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /console/: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	checkHeaders(t, "/console/", rec)
	body := rec.Body.String()
	if !strings.Contains(body, `<script type="module" src="js/app.js">`) {
		t.Fatalf("index.html does not load the app:\n%s", body)
	}
	// The policy forbids inline script and style; the page must not need any.
	if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>|<style|\sstyle=|\son[a-z]+=`).MatchString(body) {
		t.Fatal("index.html has inline script, style or an inline handler")
	}
	if etag := rec.Header().Get("ETag"); etag == "" {
		t.Fatal("no ETag")
	} else if rec := get(mux, "/console/", "If-None-Match", etag); rec.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d, want 304", rec.Code)
	}
}

func TestRedirect(t *testing.T) {
	rec := get(mustServe(t), "/console")
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/console/" {
		t.Fatalf("GET /console: %d to %q, want 301 to /console/", rec.Code, rec.Header().Get("Location"))
	}
	checkHeaders(t, "/console", rec)
}

// TestAssetsEmbedded serves every file under assets/ from the binary, with
// the type a browser needs, and checks that the modules import only files
// that exist.
func TestAssetsEmbedded(t *testing.T) {
	mux := mustServe(t)
	sub, err := fs.Sub(embedded, "assets")
	if err != nil {
		t.Fatal(err)
	}
	importRe := regexp.MustCompile(`(?m)^import .* from "(\./|\.\./)([^"]+)";`)
	var n int
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		rec := get(mux, "/console/"+p)
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("GET /console/%s: %d, %d bytes", p, rec.Code, rec.Body.Len())
		}
		checkHeaders(t, p, rec)
		ct := rec.Header().Get("Content-Type")
		if strings.HasSuffix(p, ".js") {
			if !strings.HasPrefix(ct, "text/javascript") {
				t.Errorf("%s: Content-Type %q; a module script must be JavaScript", p, ct)
			}
			if strings.Contains(rec.Body.String(), ".innerHTML") || strings.Contains(rec.Body.String(), "insertAdjacentHTML") {
				t.Errorf("%s builds markup from strings; use textContent", p)
			}
			for _, m := range importRe.FindAllStringSubmatch(rec.Body.String(), -1) {
				if _, err := fs.Stat(sub, path.Join(path.Dir(p), m[1]+m[2])); err != nil {
					t.Errorf("%s imports %s%s, which is not embedded", p, m[1], m[2])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("only %d assets embedded", n)
	}
	for _, want := range []string{"index.html", "console.css", "js/app.js", "js/api.js", "js/pages/tail.js"} {
		if _, err := fs.Stat(sub, want); err != nil {
			t.Errorf("%s is not embedded", want)
		}
	}
}

func TestNotFound(t *testing.T) {
	rec := get(mustServe(t), "/console/nope.js")
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET /console/nope.js: %d, want 404", rec.Code)
	}
	checkHeaders(t, "/console/nope.js", rec)
}

func TestNeedsIndex(t *testing.T) {
	if _, err := newHandler(fstest.MapFS{"assets/app.js": {Data: []byte("x")}}); err == nil {
		t.Fatal("assets without index.html were taken")
	}
}
