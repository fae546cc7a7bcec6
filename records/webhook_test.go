package records_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/records"
	"github.com/syncpoint/syncpoint/wire"
)

// hookedBiz is a writable user biz whose validation webhook is url.
func hookedBiz(name, url, notify string) syncpoint.Biz {
	b := syncpoint.NewBiz(name, syncpoint.TargetUser)
	b.Writable = true
	b.Webhook = &syncpoint.Webhook{ValidateURL: url, NotifyURL: notify, Secret: "hook-secret", Timeout: syncpoint.Duration(200 * time.Millisecond)}
	return b
}

// validation is what the test webhook received.
type validation struct {
	Biz      string `json:"biz"`
	Channel  string `json:"channel"`
	DeviceID string `json:"device_id"`
	UserID   string `json:"user_id"`
	WriteID  string `json:"write_id"`
	Changes  []struct {
		Op      string          `json:"op"`
		ID      string          `json:"id"`
		BaseSeq uint64          `json:"base_seq"`
		Data    json.RawMessage `json:"data"`
		Current *struct {
			Seq  uint64          `json:"seq"`
			Data json.RawMessage `json:"data"`
		} `json:"current"`
	} `json:"changes"`
}

func TestValidationWebhook(t *testing.T) {
	e := MustOpenEnv(t, nil)
	var (
		mu     sync.Mutex
		mode   = "accept"
		calls  []validation
		reject string // the id to refuse
	)
	srv := hookServer(t, "hook-secret", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var v validation
		if err := json.Unmarshal(body, &v); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		if ts, err := strconv.ParseInt(r.Header.Get("X-Syncpoint-Timestamp"), 10, 64); err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("timestamp %q", r.Header.Get("X-Syncpoint-Timestamp"))
		}
		mu.Lock()
		calls = append(calls, v)
		m, bad := mode, reject
		mu.Unlock()
		switch m {
		case "accept":
			w.WriteHeader(http.StatusNoContent)
		case "reject":
			w.WriteHeader(http.StatusUnprocessableEntity)
			json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"id": bad, "field": "title", "message": "title must not be empty"}}})
		case "hang":
			<-r.Context().Done() // past the biz's timeout: the client gives up
		case "fail":
			http.Error(w, "down", http.StatusBadGateway)
		}
	})
	e.putBiz(hookedBiz("hooked", srv.URL, ""))
	setMode := func(m string) {
		mu.Lock()
		mode = m
		mu.Unlock()
	}
	d := e.connect("u1", "d1", nil)

	// Accepted: applied, and the webhook saw the proposed change.
	a := newID()
	mustSaved(t, d.write(changes("hooked", "", []wire.Record{rec(a, 0, `{"title":"t"}`)}, nil, nil)), a)
	mu.Lock()
	if len(calls) != 1 || calls[0].Biz != "hooked" || calls[0].Channel != "hooked/user:u1" || calls[0].DeviceID != "d1" || calls[0].UserID != "u1" ||
		len(calls[0].Changes) != 1 || calls[0].Changes[0].Op != "create" || calls[0].Changes[0].ID != a || !jsonEq(calls[0].Changes[0].Data, `{"title":"t"}`) {
		t.Fatalf("webhook got %s", dump(calls))
	}
	mu.Unlock()

	// Rejected with a field error: that record only.
	setMode("reject")
	b, c := newID(), newID()
	mu.Lock()
	reject = c
	mu.Unlock()
	r := d.write(changes("hooked", "", []wire.Record{rec(b, 0, `{"title":"ok"}`), rec(c, 0, `{"title":""}`)}, []wire.Record{rec(a, 1, `{"title":"t2"}`)}, nil))
	if len(r.Saved) != 2 || r.Saved[0].ID != b || r.Saved[1].ID != a || len(r.Errors) != 1 {
		t.Fatalf("partly rejected write: %s", dump(r))
	}
	if re := r.Errors[0]; re.ID != c || re.Code != records.CodeRejected || re.Field != "title" || re.Message != "title must not be empty" {
		t.Fatalf("rejection = %s", dump(re))
	}
	mu.Lock()
	last := calls[len(calls)-1]
	mu.Unlock()
	if len(last.Changes) != 3 || last.Changes[2].Op != "update" || last.Changes[2].BaseSeq != 1 || last.Changes[2].Current == nil || last.Changes[2].Current.Seq != 1 {
		t.Fatalf("webhook got %s", dump(last))
	}

	// Timeout and 5xx: the whole write fails retryably and nothing is
	// applied; the resend is applied once the webhook answers.
	for _, m := range []string{"hang", "fail"} {
		setMode(m)
		before := len(e.entries("hooked/user:u1"))
		id := newID()
		w := changes("hooked", "", []wire.Record{rec(id, 0, `{"title":"x"}`)}, nil, nil)
		w.WriteID = "w-" + m
		r = d.write(w)
		if r.Error == nil || r.Error.Reason != "unavailable" || r.Error.Code != wire.CloseUnavailable || len(r.Saved)+len(r.Errors) != 0 {
			t.Fatalf("%s: %s", m, dump(r))
		}
		if n := len(e.entries("hooked/user:u1")); n != before {
			t.Fatalf("%s: %d entries, want %d", m, n, before)
		}
		setMode("accept")
		mustSaved(t, d.write(w), id)
	}
}
