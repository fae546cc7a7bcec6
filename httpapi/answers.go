package httpapi

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
)

// Canonical serves h behind a check of the request's path: a path with an
// empty, "." or ".." segment is a JSON 404. http.ServeMux would answer it
// with a redirect to the cleaned path and an HTML body, and a client that
// follows it acts on another resource than the one it named.
func Canonical(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; r.Method != http.MethodConnect && !cleanPath(p) {
			writeJSON(w, http.StatusNotFound, apiclient.ErrorResponse{Error: syncpoint.Error{
				Code:    syncpoint.CodeNotFound,
				Message: "no route for " + r.Method + " " + p + `: a path has no empty, "." or ".." segment`,
			}})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// cleanPath reports whether p is what path.Clean makes of it (keeping a
// trailing slash), the form http.ServeMux serves without a redirect.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.Contains(p, "//")
}

// JSONErrors serves h, a handler of another package on the API's mux (the
// WebSocket endpoint), so that its error answers have the API's JSON shape
// as every other answer under /v1 does: a status of 400 or more written
// with a body that is not JSON becomes {"error":{code, message}}, with the
// body's text as the message. Everything else passes through, hijacking
// included.
func JSONErrors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jw := &jsonErrorWriter{ResponseWriter: w}
		h.ServeHTTP(jw, r)
		jw.finish()
	})
}

// maxErrorText bounds the text of a foreign error answer kept as a message.
const maxErrorText = 512

// jsonErrorWriter holds back a non-JSON error answer until the handler is
// done, then writes it as JSON.
type jsonErrorWriter struct {
	http.ResponseWriter
	status  int // of the answer held back; 0 while passing through
	text    bytes.Buffer
	written bool
}

func (w *jsonErrorWriter) WriteHeader(code int) {
	if w.written || w.status != 0 {
		return
	}
	if code >= 400 && !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		w.status = code
		return
	}
	w.written = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *jsonErrorWriter) Write(b []byte) (int, error) {
	if !w.written && w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.status != 0 {
		w.text.Write(b[:min(len(b), max(0, maxErrorText-w.text.Len()))])
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and the WebSocket upgrade reach the
// connection.
func (w *jsonErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *jsonErrorWriter) finish() {
	if w.status == 0 {
		return
	}
	msg := strings.TrimSpace(w.text.String())
	if msg == "" {
		msg = http.StatusText(w.status)
	}
	writeJSON(w.ResponseWriter, w.status, apiclient.ErrorResponse{Error: syncpoint.Error{Code: codeOfStatus(w.status), Message: msg}})
}

// codeOfStatus is the error code of a status that statusOf has no code
// for, or the code statusOf maps to it.
func codeOfStatus(status int) syncpoint.ErrorCode {
	if status == http.StatusMethodNotAllowed {
		return "method_not_allowed"
	}
	// Several codes share a status; a foreign answer gets the generic one.
	for _, code := range []syncpoint.ErrorCode{
		syncpoint.CodeMalformed, syncpoint.CodeInvalid, syncpoint.CodeUnauthorized, syncpoint.CodeForbidden,
		syncpoint.CodeNotFound, syncpoint.CodeConflict, syncpoint.CodeTooLarge, syncpoint.CodeRateLimited,
		syncpoint.CodeInternal, syncpoint.CodeUnavailable,
	} {
		if statusOf[code] == status {
			return code
		}
	}
	if status >= 500 {
		return syncpoint.CodeInternal
	}
	return syncpoint.CodeMalformed
}
