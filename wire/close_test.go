package wire

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint"
)

func codeOf(err error) syncpoint.ErrorCode {
	var e *syncpoint.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

var allCodes = []syncpoint.ErrorCode{
	syncpoint.CodeMalformed, syncpoint.CodeInvalid, syncpoint.CodeUnauthorized, syncpoint.CodeForbidden,
	syncpoint.CodeNotFound, syncpoint.CodeTooLarge, syncpoint.CodeRateLimited, syncpoint.CodeConflict,
	syncpoint.CodeUnavailable, syncpoint.CodeInternal, syncpoint.CodeSlowConsumer,
}

func TestCloseCodeFor(t *testing.T) {
	want := map[syncpoint.ErrorCode]CloseCode{
		"":                           CloseNormal,
		syncpoint.CodeMalformed:      CloseBadRequest,
		syncpoint.CodeInvalid:        CloseBadRequest,
		syncpoint.CodeUnauthorized:   CloseUnauthorized,
		syncpoint.CodeForbidden:      CloseForbidden,
		syncpoint.CodeNotFound:       CloseBadRequest,
		syncpoint.CodeTooLarge:       CloseTooLarge,
		syncpoint.CodeRateLimited:    CloseUnavailable,
		syncpoint.CodeConflict:       CloseBadRequest,
		syncpoint.CodeUnavailable:    CloseUnavailable,
		syncpoint.CodeInternal:       CloseInternal,
		syncpoint.CodeSlowConsumer:   CloseSlowConsumer,
		syncpoint.ErrorCode("bogus"): CloseInternal,
	}
	for _, c := range allCodes {
		if _, ok := want[c]; !ok {
			t.Errorf("error code %q has no expected close code in this test", c)
		}
	}
	for code, cc := range want {
		if got := CloseCodeFor(code); got != cc {
			t.Errorf("CloseCodeFor(%q) = %v, want %v", code, got, cc)
		}
	}
}

func TestCloseCodeAction(t *testing.T) {
	for _, tc := range []struct {
		code CloseCode
		name string
		act  Action
	}{
		{CloseNormal, "normal", Stop},
		{CloseGoingAway, "going_away", Reconnect},
		{CloseSlowConsumer, "slow_consumer", Reconnect},
		{CloseHeartbeatTimeout, "heartbeat_timeout", Reconnect},
		{CloseUnavailable, "unavailable", Reconnect},
		{CloseInternal, "internal", Reconnect},
		{CloseResync, "resync", Resync},
		{CloseBadRequest, "bad_request", Stop},
		{CloseUnauthorized, "unauthorized", Stop},
		{CloseForbidden, "forbidden", Stop},
		{CloseUnsupportedVersion, "unsupported_version", Stop},
		{CloseTooLarge, "too_large", Stop},
		// Unknown codes follow their range; transport codes reconnect.
		{1001, "1001", Reconnect},
		{1002, "1002", Stop},
		{1006, "1006", Reconnect},
		{1009, "1009", Stop},
		{1011, "1011", Reconnect},
		{1013, "1013", Reconnect},
		{3499, "3499", Reconnect},
		{3777, "3777", Resync},
		{4999, "4999", Stop},
		{5000, "5000", Reconnect},
	} {
		if got := tc.code.String(); got != tc.name {
			t.Errorf("%d: String() = %q, want %q", uint32(tc.code), got, tc.name)
		}
		if got := tc.code.Action(); got != tc.act {
			t.Errorf("%v: Action() = %v, want %v", tc.code, got, tc.act)
		}
	}
	if Reconnect.String() != "reconnect" || Resync.String() != "resync" || Stop.String() != "stop" {
		t.Error("Action.String")
	}
}

func TestErrorFrom(t *testing.T) {
	if ErrorFrom(nil, true) != nil {
		t.Fatal("ErrorFrom(nil) is not nil")
	}
	// An internal error's detail never reaches the client.
	secret := fmt.Errorf("append entry: open /var/lib/syncpoint/000123.sst: %w", errors.New("disk on fire"))
	e := ErrorFrom(secret, true)
	if e.Code != CloseInternal || e.Reason != "internal" || !e.Fatal || strings.Contains(e.Message, "sst") {
		t.Fatalf("internal: got %+v", e)
	}
	e = ErrorFrom(fmt.Errorf("hello: %w", syncpoint.Errorf(syncpoint.CodeForbidden, "biz payroll is not readable")), false)
	want := Error{Code: CloseForbidden, Reason: "forbidden", Message: "biz payroll is not readable"}
	if *e != want {
		t.Fatalf("forbidden: got %+v, want %+v", *e, want)
	}
	e = ErrorFrom(syncpoint.ErrClosed, true)
	if e.Code != CloseUnavailable || e.Code.Action() != Reconnect {
		t.Fatalf("closed store: got %+v", e)
	}
	// A wire error passes through, with the fatal flag of the caller.
	in := &Error{Code: CloseResync, Reason: "invalid", Message: "chat/user:u1 was reset"}
	e = ErrorFrom(fmt.Errorf("session: %w", in), true)
	if e == in || e.Code != CloseResync || !e.Fatal || in.Fatal {
		t.Fatalf("wire error: got %+v", e)
	}
}

func TestErrorAsError(t *testing.T) {
	e := &Error{Code: CloseUnauthorized, Reason: "unauthorized", Message: "token expired", Fatal: true}
	if got := e.Error(); got != "unauthorized: token expired" {
		t.Errorf("Error() = %q", got)
	}
	if syncpoint.Code(e) != syncpoint.CodeUnauthorized || syncpoint.Message(e) != "token expired" {
		t.Errorf("syncpoint.Code/Message do not see through: %q %q", syncpoint.Code(e), syncpoint.Message(e))
	}
	e = &Error{Code: CloseResync, Reason: "invalid"}
	if got := e.Error(); got != "resync (invalid)" {
		t.Errorf("Error() = %q", got)
	}
}
