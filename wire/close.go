package wire

import (
	"errors"
	"strconv"

	"github.com/syncpoint/syncpoint"
)

// CloseCode tells a client why the server ended a session, or refused a
// request, and so what to do next (see Action). On WebSocket it is also the
// close status.
type CloseCode uint32

// The close codes. 3000-3499 mean reconnect, 3500-3999 resync, 4000-4999
// stop until something changes; codes a client does not know are read by
// those ranges.
const (
	// CloseNormal ends a session the client asked to end.
	CloseNormal CloseCode = 1000
	// CloseGoingAway: the server is shutting down; reconnect, to any node.
	CloseGoingAway CloseCode = 3000
	// CloseSlowConsumer: the client did not keep up with its pushes;
	// reconnect and resume from the sync point.
	CloseSlowConsumer CloseCode = 3001
	// CloseHeartbeatTimeout: no frame arrived for too many heartbeat
	// intervals; reconnect.
	CloseHeartbeatTimeout CloseCode = 3002
	// CloseUnavailable: the server cannot serve now (a dependency is down,
	// or the client is rate limited); retry with backoff.
	CloseUnavailable CloseCode = 3003
	// CloseInternal: the server failed; retry with backoff.
	CloseInternal CloseCode = 3004
	// CloseResync: a channel's history was reset while connected; reconnect,
	// and the welcome reports the channel as reset.
	CloseResync CloseCode = 3500
	// CloseBadRequest: a malformed frame or a protocol violation; retrying
	// the same thing fails the same way.
	CloseBadRequest CloseCode = 4000
	// CloseUnauthorized: the token is missing, bad or expired; get a new
	// one before reconnecting.
	CloseUnauthorized CloseCode = 4001
	// CloseForbidden: a subscription or write is not allowed; the message
	// names the biz.
	CloseForbidden CloseCode = 4003
	// CloseUnsupportedVersion: the server speaks none of hello's versions.
	CloseUnsupportedVersion CloseCode = 4005
	// CloseTooLarge: a frame was over the size limit.
	CloseTooLarge CloseCode = 4009
)

// String returns the code's snake_case name, or its number for a code this
// build does not know.
func (c CloseCode) String() string {
	switch c {
	case CloseNormal:
		return "normal"
	case CloseGoingAway:
		return "going_away"
	case CloseSlowConsumer:
		return "slow_consumer"
	case CloseHeartbeatTimeout:
		return "heartbeat_timeout"
	case CloseUnavailable:
		return "unavailable"
	case CloseInternal:
		return "internal"
	case CloseResync:
		return "resync"
	case CloseBadRequest:
		return "bad_request"
	case CloseUnauthorized:
		return "unauthorized"
	case CloseForbidden:
		return "forbidden"
	case CloseUnsupportedVersion:
		return "unsupported_version"
	case CloseTooLarge:
		return "too_large"
	}
	return strconv.FormatUint(uint64(c), 10)
}

// Action is what a client does after a close code.
type Action int

// The actions.
const (
	// Reconnect after a jittered backoff and resume from the sync points.
	Reconnect Action = iota
	// Resync: reconnect; the welcome marks the affected channels reset, so
	// their local data is discarded and fetched again.
	Resync
	// Stop: do not reconnect until something changes (a new token, a new
	// app version, a fixed request, or the app asked to close).
	Stop
)

// String returns "reconnect", "resync" or "stop".
func (a Action) String() string {
	switch a {
	case Reconnect:
		return "reconnect"
	case Resync:
		return "resync"
	case Stop:
		return "stop"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Action returns what a client does after c. A normal close was asked for by
// the client, so it stops. Unknown codes follow their range. Of the
// WebSocket codes, those that blame the frames sent (1002 protocol error,
// 1003 unsupported data, 1007 invalid payload, 1008 policy, 1009 too big,
// 1010 extension) stop, since resending the same frames fails the same way;
// the rest (1001, 1006, 1011...) mean the connection failed, so reconnect.
func (c CloseCode) Action() Action {
	switch {
	case c == CloseNormal, c == 1002, c == 1003, c >= 1007 && c <= 1010:
		return Stop
	case c >= 3500 && c < 4000:
		return Resync
	case c >= 4000 && c < 5000:
		return Stop
	}
	return Reconnect
}

// errorCloseCodes is the one table from syncpoint error codes to close
// codes (docs/protocol.md section 13). It decides both directions: the
// close code of an error (CloseCodeFor), and the reason a close code carries
// (Reason), which is the first error code listed for it.
var errorCloseCodes = []struct {
	code  syncpoint.ErrorCode
	close CloseCode
}{
	{syncpoint.CodeMalformed, CloseBadRequest},
	{syncpoint.CodeInvalid, CloseBadRequest},
	{syncpoint.CodeNotFound, CloseBadRequest},
	{syncpoint.CodeConflict, CloseBadRequest},
	{syncpoint.CodeUnauthorized, CloseUnauthorized},
	{syncpoint.CodeForbidden, CloseForbidden},
	{syncpoint.CodeTooLarge, CloseTooLarge},
	{syncpoint.CodeUnavailable, CloseUnavailable},
	{syncpoint.CodeRateLimited, CloseUnavailable},
	{syncpoint.CodeSlowConsumer, CloseSlowConsumer},
	{syncpoint.CodeInternal, CloseInternal},
}

// Reason is the error code that an error frame with close code c carries:
// one that CloseCodeFor maps to c, or "" for the codes no error code maps
// to (normal, going_away, heartbeat_timeout, resync, unsupported_version),
// so that reason and code never disagree.
func (c CloseCode) Reason() syncpoint.ErrorCode {
	for _, row := range errorCloseCodes {
		if row.close == c {
			return row.code
		}
	}
	return ""
}

// CloseCodeFor is the close code of an error code. An unknown code counts
// as internal; "" (no error) is a normal close.
func CloseCodeFor(code syncpoint.ErrorCode) CloseCode {
	if code == "" {
		return CloseNormal
	}
	for _, row := range errorCloseCodes {
		if row.code == code {
			return row.close
		}
	}
	return CloseInternal
}

// NewError returns the error frame for close code c, with the reason the
// table gives it.
func NewError(c CloseCode, message string, fatal bool) *Error {
	return &Error{Code: c, Reason: string(c.Reason()), Message: message, Fatal: fatal}
}

// Error reports a problem to the peer. Fatal errors end the session: the
// sender closes the connection after it (on WebSocket, with Code as the
// close status).
type Error struct {
	Code    CloseCode // what the client should do
	Reason  string    // a syncpoint.ErrorCode, e.g. "slow_consumer"
	Message string    // for people; never holds internal detail
	Fatal   bool
}

// ErrorFrom builds the Error to send for err. Only the code and the
// client-safe message of err are used (syncpoint.Code and
// syncpoint.Message), so nothing internal leaks. A *Error in err's chain is
// passed on as it is, with fatal applied. ErrorFrom(nil, ...) is nil.
func ErrorFrom(err error, fatal bool) *Error {
	if err == nil {
		return nil
	}
	var we *Error
	if errors.As(err, &we) {
		c := *we
		c.Fatal = fatal
		return &c
	}
	code := syncpoint.Code(err)
	return &Error{Code: CloseCodeFor(code), Reason: string(code), Message: syncpoint.Message(err), Fatal: fatal}
}

// Error implements error, so a client can return what the server sent.
func (e *Error) Error() string {
	s := e.Code.String()
	if e.Reason != "" && e.Reason != s {
		s += " (" + e.Reason + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the *syncpoint.Error the server reported, so
// syncpoint.Code and errors.As see Reason and Message.
func (e *Error) Unwrap() error {
	code := syncpoint.ErrorCode(e.Reason)
	if code == "" {
		code = syncpoint.CodeInternal
	}
	return &syncpoint.Error{Code: code, Message: e.Message}
}
