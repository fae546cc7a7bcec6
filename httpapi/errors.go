package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

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
		ce.Seq = e.Seq
	}
	return ce
}

// writeError answers with err in the JSON error shape. Internal errors are
// logged with their details and answered with a generic message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
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

// jsonError turns an encoding/json error into a client error that says
// where the body went wrong.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var se *syncpoint.Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &syn):
		// Offset counts the bytes read, the bad one included.
		return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON at byte offset %d: %s", max(syn.Offset-1, 0), strings.TrimPrefix(syn.Error(), "json: "))
	case errors.Is(err, io.EOF):
		return syncpoint.Errorf(syncpoint.CodeMalformed, "the body is empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON: the body ends in the middle of a value")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return syncpoint.Errorf(syncpoint.CodeInvalid, "the body is a JSON %s; want an object", typ.Value)
		}
		return syncpoint.Errorf(syncpoint.CodeInvalid, "%s: want %s, got a JSON %s", field, jsonTypeName(typ.Type.String()), typ.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "unknown field %s", f)
	}
	return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON: %s", strings.TrimPrefix(msg, "json: "))
}

// jsonTypeName says a Go type the way a JSON user would.
func jsonTypeName(goType string) string {
	switch {
	case goType == "string", goType == "syncpoint.Op", goType == "syncpoint.TargetKind",
		goType == "syncpoint.ConflictPolicy", goType == "syncpoint.Duration":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return "an object"
}
