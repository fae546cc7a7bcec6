package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
)

// statusOf is the one table from error codes to HTTP status.
var statusOf = map[syncpoint.ErrorCode]int{
	syncpoint.CodeMalformed:    http.StatusBadRequest,
	syncpoint.CodeInvalid:      http.StatusUnprocessableEntity,
	syncpoint.CodeUnauthorized: http.StatusUnauthorized,
	syncpoint.CodeForbidden:    http.StatusForbidden,
	syncpoint.CodeNotFound:     http.StatusNotFound,
	syncpoint.CodeConflict:     http.StatusConflict,
	syncpoint.CodeTooLarge:     http.StatusRequestEntityTooLarge,
	syncpoint.CodeRateLimited:  http.StatusTooManyRequests,
	syncpoint.CodeInternal:     http.StatusInternalServerError,
	syncpoint.CodeUnavailable:  http.StatusServiceUnavailable,
	syncpoint.CodeSlowConsumer: http.StatusServiceUnavailable,

	syncpoint.CodeIdempotencyMismatch: http.StatusConflict,

	syncpoint.CodeUnknownSession:    http.StatusNotFound,
	syncpoint.CodeSessionSuperseded: http.StatusConflict,
	syncpoint.CodeInvalidCursor:     http.StatusUnprocessableEntity,
	syncpoint.CodeInvalidAckKey:     http.StatusUnprocessableEntity,
}

// Status returns the HTTP status for an error code; unknown codes are 500.
func Status(code syncpoint.ErrorCode) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// clientError turns err into the code and message a client may see.
func clientError(err error) syncpoint.Error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The client went away or the server is stopping; nothing broke.
		return syncpoint.Error{Code: syncpoint.CodeUnavailable, Message: "the request was canceled before it finished"}
	}
	code := syncpoint.Code(err)
	if _, ok := statusOf[code]; !ok {
		code = syncpoint.CodeInternal
	}
	msg := syncpoint.Message(err)
	if code == syncpoint.CodeInternal {
		msg = "internal error"
	}
	ce := syncpoint.Error{Code: code, Message: msg}
	if e := (*syncpoint.Error)(nil); errors.As(err, &e) {
		ce.Seq, ce.Field = e.Seq, e.Field
	}
	return ce
}

// writeError answers with err in the JSON error shape. Internal errors are
// logged with their details and answered with a generic message.
// A route's own writer, when given, writes the body instead.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, own errorWriter) {
	ce := clientError(err)
	if ce.Code == syncpoint.CodeInternal {
		s.logger.Error("httpapi: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	status := Status(ce.Code)
	h := w.Header()
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer realm="syncpoint"`)
	case http.StatusTooManyRequests:
		if h.Get("Retry-After") == "" {
			h.Set("Retry-After", "1")
		}
	}
	if own != nil {
		own(w, r, status, ce)
		return
	}
	writeJSON(w, status, apiclient.ErrorResponse{Error: ce})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a value that cannot be JSON gets here (corrupt stored data).
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
		status = http.StatusInternalServerError
	}
	writeBody(w, status, append(b, '\n'))
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	w.Write(b)
}

var jsonContentType = []string{"application/json"}
