package syncpoint

import (
	"errors"
	"fmt"
)

// Sentinel errors returned by Store implementations. Callers test them with
// errors.Is.
var (
	// ErrNotFound means the channel, entry, device, biz or key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrKeyChanged means an AppendRequest's IfKeySeq did not hold.
	ErrKeyChanged = errors.New("key changed")
	// ErrIdempotencyMismatch means an AppendRequest's idempotency key was
	// already used in the channel for an entry with other content.
	ErrIdempotencyMismatch = errors.New("idempotency key already used for other content")
	// ErrClosed means the store or broker was closed.
	ErrClosed = errors.New("closed")
	// ErrUnavailable means the store cannot take writes now: its disk or
	// its database fails. The error that wraps it says why.
	ErrUnavailable = errors.New("store unavailable")
)

// ErrorCode classifies an error at the API edge. Each code maps to one HTTP
// status (httpapi) and one close code (wire).
type ErrorCode string

// The error codes clients see.
const (
	CodeMalformed    ErrorCode = "malformed"     // the body or frame does not parse
	CodeInvalid      ErrorCode = "invalid"       // it parses, but a field is wrong
	CodeUnauthorized ErrorCode = "unauthorized"  // no, bad or expired credentials
	CodeForbidden    ErrorCode = "forbidden"     // valid credentials, not allowed
	CodeNotFound     ErrorCode = "not_found"     // unknown biz, channel, device
	CodeTooLarge     ErrorCode = "too_large"     // entry or body over its limit
	CodeRateLimited  ErrorCode = "rate_limited"  // slow down and retry
	CodeConflict     ErrorCode = "conflict"      // a record changed since base_seq
	CodeUnavailable  ErrorCode = "unavailable"   // shutting down or a dependency is down; retry
	CodeInternal     ErrorCode = "internal"      // a bug or an I/O failure; details are logged
	CodeSlowConsumer ErrorCode = "slow_consumer" // the device did not keep up; resume
)

// CodeIdempotencyMismatch means the idempotency key names an earlier entry
// (Error.Seq) with other content; nothing new was stored for it.
const CodeIdempotencyMismatch ErrorCode = "idempotency_mismatch"

// The codes of HTTP sync (package httpsync). They are answered over HTTP
// only, so no close code stands for them.
const (
	// CodeUnknownSession: the queue session id names no open session of
	// this device (never started, expired while idle, or another
	// device's). Start a new one.
	CodeUnknownSession ErrorCode = "unknown_session"
	// CodeSessionSuperseded: a newer start of the same device replaced
	// the session. Use the new one.
	CodeSessionSuperseded ErrorCode = "session_superseded"
	// CodeInvalidCursor: a one-shot cursor that this server did not issue
	// for this device, or that was altered.
	CodeInvalidCursor ErrorCode = "invalid_cursor"
	// CodeInvalidAckKey: an ack key that this server did not issue for
	// this device, or that was altered.
	CodeInvalidAckKey ErrorCode = "invalid_ack_key"
)

// Error is an error safe to show a client: a code and a human message.
// Internal details never go into Message; they are logged where they happen.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	// Seq, with CodeIdempotencyMismatch, is the seq of the entry that the
	// idempotency key already names.
	Seq uint64 `json:"seq,omitempty"`
	// Field, when set, names the request field that is wrong, as its JSON
	// name ("max_backlog", "webhook.timeout"), so that a form can show the
	// message beside it.
	Field string `json:"field,omitempty"`
}

// Error implements error.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf returns an *Error with the code, the name of the field it is
// about and a formatted message.
func FieldErrorf(code ErrorCode, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// WithField returns err with Field set to field when err is an *Error
// (a copy: err itself is not changed), else err.
func WithField(err error, field string) error {
	if e, ok := err.(*Error); ok {
		c := *e
		c.Field = field
		return &c
	}
	return err
}

// Code returns the code of the first *Error in err's chain, else that of a
// sentinel error (CodeNotFound for ErrNotFound, CodeIdempotencyMismatch for
// ErrIdempotencyMismatch, CodeUnavailable for ErrClosed and
// ErrUnavailable), else CodeInternal (nil gives "").
func Code(err error) ErrorCode {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, ErrNotFound) {
		return CodeNotFound
	}
	if errors.Is(err, ErrIdempotencyMismatch) {
		return CodeIdempotencyMismatch
	}
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrUnavailable) {
		return CodeUnavailable
	}
	return CodeInternal
}

// Message returns the client-safe message of err: an *Error's Message, or a
// generic text for anything else, so internal details never leak.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	switch Code(err) {
	case CodeNotFound:
		return "not found"
	case CodeIdempotencyMismatch:
		return "the idempotency key was already used for other content"
	case CodeUnavailable:
		if errors.Is(err, ErrUnavailable) {
			return "the store cannot take writes now; retry later"
		}
		return "the server is shutting down"
	}
	return "internal error"
}
