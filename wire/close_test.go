package wire

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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

// TestCloseCodesMatchTheProtocolDoc reads both tables of protocol.md
// section 13 and checks every close code's name and action, every error
// code's close code, and that the reason each close code carries maps back
// to it.
func TestCloseCodesMatchTheProtocolDoc(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "\n## 13. Errors and close codes\n")
	if !ok {
		t.Fatal("protocol.md has no section 13")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	named := regexp.MustCompile("`([a-z_]+)`")
	bold := regexp.MustCompile(`\*\*([a-z]+)\*\*`)
	docCodes := map[CloseCode]bool{}
	docErrors := map[syncpoint.ErrorCode]CloseCode{}
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case len(cells) == 4: // | Code | Name | Sent when | Client action |
			n, err := strconv.Atoi(cells[0])
			if err != nil {
				continue // the header and the rule under it
			}
			code := CloseCode(n)
			docCodes[code] = true
			name, action := named.FindStringSubmatch(cells[1]), bold.FindStringSubmatch(cells[3])
			if name == nil || action == nil {
				t.Fatalf("row %q: no name or action", line)
			}
			if code.String() != name[1] {
				t.Errorf("%d: String() = %q, the doc says %q", n, code.String(), name[1])
			}
			if code.Action().String() != action[1] {
				t.Errorf("%d: Action() = %v, the doc says %s", n, code.Action(), action[1])
			}
		case len(cells) == 2: // | Error code (reason) | Close code |
			n, err := strconv.Atoi(cells[1])
			if err != nil {
				continue
			}
			for _, m := range named.FindAllStringSubmatch(cells[0], -1) {
				docErrors[syncpoint.ErrorCode(m[1])] = CloseCode(n)
			}
		}
	}
	for _, c := range []CloseCode{CloseNormal, CloseGoingAway, CloseSlowConsumer, CloseHeartbeatTimeout, CloseUnavailable,
		CloseInternal, CloseResync, CloseBadRequest, CloseUnauthorized, CloseForbidden, CloseUnsupportedVersion, CloseTooLarge} {
		if !docCodes[c] {
			t.Errorf("close code %d (%v) is not in the doc's table", uint32(c), c)
		}
	}
	for _, e := range allCodes {
		want, ok := docErrors[e]
		if !ok {
			t.Errorf("error code %q is not in the doc's table", e)
			continue
		}
		if got := CloseCodeFor(e); got != want {
			t.Errorf("CloseCodeFor(%q) = %d, the doc says %d", e, uint32(got), uint32(want))
		}
	}
	for c := range docCodes {
		r := c.Reason()
		mapped := false
		for _, cc := range docErrors {
			mapped = mapped || cc == c
		}
		switch {
		case r == "" && mapped:
			t.Errorf("%d (%v) carries no reason, but the doc maps error codes to it", uint32(c), c)
		case r != "" && docErrors[r] != c:
			t.Errorf("%d (%v) carries reason %q, which the doc maps to %d", uint32(c), c, r, uint32(docErrors[r]))
		}
		if e := NewError(c, "m", true); e.Reason != string(r) || e.Code != c {
			t.Errorf("NewError(%d) = %+v", uint32(c), e)
		}
	}
}
