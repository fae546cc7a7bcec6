package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
)

var deviceSecret = []byte("reconcile-test-secret-0123456789")

// reconcileServer is the API with device tokens and compact bizzes: notes
// (user), shared (group) and plain (user, not compact).
type reconcileServer struct {
	*testServer
	token string // of u1, granting group g1
}

func mustStartReconcile(tb testing.TB) *reconcileServer {
	tb.Helper()
	var ts *testServer
	ts = MustStartServer(tb, func(c *Config) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Secret: deviceSecret, Clock: c.Clock})
		if err != nil {
			tb.Fatal(err)
		}
		c.DeviceTokens = auth.Tokens{JWT: v, Opaque: auth.NewOpaque(auth.OpaqueConfig{Store: c.Store, Clock: c.Clock})}
	})
	ctx := context.Background()
	notes := syncpoint.NewBiz("notes", syncpoint.TargetUser)
	notes.Compact = true
	shared := syncpoint.NewBiz("shared", syncpoint.TargetGroup)
	shared.Compact = true
	plain := syncpoint.NewBiz("plain", syncpoint.TargetUser)
	for _, b := range []syncpoint.Biz{notes, shared, plain} {
		if err := ts.reg.Put(ctx, b); err != nil {
			tb.Fatal(err)
		}
	}
	return &reconcileServer{testServer: ts, token: mintJWT(tb, "u1", "g1")}
}

func mintJWT(tb testing.TB, user string, groups ...string) string {
	tb.Helper()
	tok, err := auth.Mint(deviceSecret, auth.Claims{User: user, Groups: groups, ExpiresAt: t0.Add(24 * time.Hour)}, t0)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

var notesU1 = syncpoint.Channel{Biz: "notes", Target: syncpoint.UserTarget("u1")}

// append writes entries straight into the store, as the publisher would.
func (rs *reconcileServer) append(tb testing.TB, ch syncpoint.Channel, ops ...string) {
	tb.Helper()
	var reqs []syncpoint.AppendRequest
	for _, op := range ops {
		e := syncpoint.Entry{Channel: ch, Op: syncpoint.OpPut, Origin: syncpoint.OriginAPI, CreatedAt: t0}
		key, data, isPut := strings.Cut(op, "=")
		e.Key = key
		if isPut {
			e.Data = json.RawMessage(data)
		} else {
			e.Op = syncpoint.OpDelete
		}
		reqs = append(reqs, syncpoint.AppendRequest{Entry: e, Policy: syncpoint.Policy{Compact: true}})
	}
	if _, err := rs.store.Append(context.Background(), reqs); err != nil {
		tb.Fatal(err)
	}
}

// reconcile posts a body as device d1 of the token.
func (rs *reconcileServer) reconcile(tb testing.TB, token, device, body string) response {
	tb.Helper()
	req, err := http.NewRequest("POST", rs.URL+"/v1/sync/reconcile", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if device != "" {
		req.Header.Set("X-Device-Id", device)
	}
	resp, err := rs.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (rs *reconcileServer) answer(tb testing.TB, body string) reconcileAnswer {
	tb.Helper()
	r := rs.reconcile(tb, rs.token, "d1", body)
	if r.status != 200 {
		tb.Fatalf("reconcile %s: %d %s", body, r.status, r.body)
	}
	var a reconcileAnswer
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		tb.Fatalf("answer %s does not decode as a reconcileAnswer: %v", r.body, err)
	}
	return a
}

func putIDs(a reconcileAnswer) []string {
	out := []string{}
	for _, p := range a.Put {
		out = append(out, fmt.Sprintf("%s@%d=%s", p.ID, p.Seq, p.Data))
	}
	return out
}

func sameIDs(a reconcileAnswer) []string {
	out := []string{}
	for _, s := range a.Same {
		out = append(out, fmt.Sprintf("%s@%d", s.ID, s.Seq))
	}
	return out
}

func wantAnswer(tb testing.TB, what string, a reconcileAnswer, put, same, stale, del []string) {
	tb.Helper()
	if !slices.Equal(putIDs(a), put) || !slices.Equal(sameIDs(a), same) || !slices.Equal(a.Stale, stale) || !slices.Equal(a.Delete, del) {
		tb.Fatalf("%s:\n put %v, want %v\n same %v, want %v\n stale %v, want %v\n delete %v, want %v", what, putIDs(a), put, sameIDs(a), same, a.Stale, stale, a.Delete, del)
	}
}

func hashOf(data string) string { return RecordHash([]byte(data)) }

// TestReconcileDiff: the answer holds only what differs, by seq within the
// channel's epoch and by hash across epochs.
func TestReconcileDiff(t *testing.T) {
	rs := mustStartReconcile(t)
	rs.append(t, notesU1, `a={"v":1}`, `b={"v":1}`, `c={"v":1}`, `d={"v":1}`) // 1-4
	rs.append(t, notesU1, `c={"v":2}`, `d`, `e={"v":1}`)                      // 5-7
	info, err := rs.store.Channel(context.Background(), notesU1)
	if err != nil {
		t.Fatal(err)
	}

	// In the channel's epoch, equal seqs are equal versions.
	a := rs.answer(t, fmt.Sprintf(`{"biz":"notes","epoch":%q,"records":[
		{"id":"a","seq":1},{"id":"b","seq":2},{"id":"c","seq":3},{"id":"d","seq":4},{"id":"z","seq":2}]}`, info.Epoch))
	wantAnswer(t, "same epoch", a, []string{`c@5={"v":2}`, `e@7={"v":1}`}, []string{}, []string{}, []string{"d", "z"})
	if a.Position != (answerPosition{Channel: "notes/user:u1", Epoch: info.Epoch, Seq: 7}) || a.NextID != nil {
		t.Fatalf("position %+v next %v", a.Position, a.NextID)
	}
	if p := a.Put[0]; p.CreatedAt != t0.UnixMilli() || p.Origin != syncpoint.OriginAPI || p.ExpiresAt != 0 {
		t.Fatalf("put %+v", p)
	}

	// Across epochs only the hash tells: a at its seq with its content is
	// current; b's content under another seq takes the server's seq; c's
	// content differs; a record without a hash is sent.
	a = rs.answer(t, `{"biz":"notes","epoch":"another","records":[
		{"id":"a","seq":1,"hash":"`+hashOf(`{"v":1}`)+`"},
		{"id":"b","seq":9,"hash":"`+hashOf(`{"v":1}`)+`"},
		{"id":"c","seq":5,"hash":"`+hashOf(`{"v":1}`)+`"},
		{"id":"e","seq":7}]}`)
	wantAnswer(t, "across epochs", a, []string{`c@5={"v":2}`, `e@7={"v":1}`}, []string{"b@2"}, []string{}, []string{})

	// Within the epoch a hash spares data under another seq too.
	a = rs.answer(t, fmt.Sprintf(`{"biz":"notes","epoch":%q,"records":[{"id":"c","seq":3,"hash":%q}]}`, info.Epoch, hashOf(`{"v":2}`)))
	wantAnswer(t, "hash in the epoch", a, []string{`a@1={"v":1}`, `b@2={"v":1}`, `e@7={"v":1}`}, []string{"c@5"}, []string{}, []string{})
}

// TestReconcilePages: pages by id range answer for exactly their range,
// and all pages answer for the first page's position.
func TestReconcilePages(t *testing.T) {
	rs := mustStartReconcile(t)
	var ops []string
	for i := range 30 {
		ops = append(ops, fmt.Sprintf(`k%02d={"i":%d}`, i, i))
	}
	rs.append(t, notesU1, ops...) // k00@1 .. k29@30
	info, _ := rs.store.Channel(context.Background(), notesU1)
	rec := func(ids ...int) string {
		var parts []string
		for _, i := range ids {
			parts = append(parts, fmt.Sprintf(`{"id":"k%02d","seq":%d}`, i, i+1))
		}
		return strings.Join(parts, ",")
	}
	// The device holds k00-k19 but k05, and k40 that the server never had.
	first := rs.answer(t, fmt.Sprintf(`{"biz":"notes","epoch":%q,"up_to_id":"k09","records":[%s]}`, info.Epoch, rec(0, 1, 2, 3, 4, 6, 7, 8, 9)))
	wantAnswer(t, "page 1", first, []string{`k05@6={"i":5}`}, []string{}, []string{}, []string{})
	if first.NextID != nil || first.Position.Seq != 30 {
		t.Fatalf("page 1: next %v, position %+v", first.NextID, first.Position)
	}

	// Changes between pages: k12 is updated and k14 deleted after the
	// first page's position; k40 appears.
	rs.append(t, notesU1, `k12={"i":"new"}`, `k14`, `k40={"i":40}`) // 31, 32, 33
	pos := fmt.Sprintf(`{"epoch":%q,"seq":%d}`, first.Position.Epoch, first.Position.Seq)
	second := rs.answer(t, fmt.Sprintf(`{"biz":"notes","epoch":%q,"position":%s,"after_id":"k09","up_to_id":"k19","records":[%s]}`, info.Epoch, pos, rec(10, 11, 12, 13, 14, 15, 16, 17, 18, 19)))
	// Both changes come in the sync from position 30; nothing to do now.
	wantAnswer(t, "page 2", second, []string{}, []string{}, []string{}, []string{})
	if second.Position != first.Position {
		t.Fatalf("page 2 answers for %+v, not the first page's %+v", second.Position, first.Position)
	}
	last := rs.answer(t, fmt.Sprintf(`{"biz":"notes","epoch":%q,"position":%s,"after_id":"k19","records":[{"id":"k50","seq":3}]}`, info.Epoch, pos))
	var want []string
	for i := 20; i < 30; i++ {
		want = append(want, fmt.Sprintf(`k%02d@%d={"i":%d}`, i, i+1, i))
	}
	wantAnswer(t, "last page", last, want, []string{}, []string{}, []string{"k50"})

	// The sync from the position brings exactly what the pages left out.
	p, err := rs.store.Read(context.Background(), notesU1, first.Position.Seq, 0, rs.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range p.Entries {
		keys = append(keys, fmt.Sprintf("%s %s", e.Op, e.Key))
	}
	if !slices.Equal(keys, []string{"put k12", "delete k14", "put k40"}) {
		t.Fatalf("the sync from the position reads %v", keys)
	}

	// A record held under another epoch at a seq at or above its newest
	// one (which comes after the position) is stale, so the sync applies.
	a := rs.answer(t, fmt.Sprintf(`{"biz":"notes","epoch":"old","position":%s,"after_id":"k11","up_to_id":"k14","records":[{"id":"k12","seq":31,"hash":"AAAAAAAAAAAAAAAA"},{"id":"k13","seq":14,"hash":%q},{"id":"k14","seq":40}]}`, pos, hashOf(`{"i":13}`)))
	wantAnswer(t, "stale", a, []string{}, []string{}, []string{"k12", "k14"}, []string{})
}

// TestReconcileAnswerBound: an answer stops at its data bound and says
// where; the rest of the range comes from there.
func TestReconcileAnswerBound(t *testing.T) {
	rs := mustStartReconcile(t)
	big := `"` + strings.Repeat("x", syncpoint.DefaultMaxEntryBytes-64) + `"`
	var ops []string
	for i := range 6 {
		ops = append(ops, fmt.Sprintf("r%d=%s", i, big))
	}
	rs.append(t, notesU1, ops...)
	a := rs.answer(t, `{"biz":"notes","records":[]}`)
	if len(a.Put) != 5 || a.NextID == nil || *a.NextID != "r4" {
		t.Fatalf("a bounded answer has %d puts, next %v", len(a.Put), a.NextID)
	}
	pos := fmt.Sprintf(`{"epoch":%q,"seq":%d}`, a.Position.Epoch, a.Position.Seq)
	b := rs.answer(t, `{"biz":"notes","position":`+pos+`,"after_id":"r4","records":[]}`)
	if len(b.Put) != 1 || b.Put[0].ID != "r5" || b.NextID != nil {
		t.Fatalf("the rest: %d puts, next %v", len(b.Put), b.NextID)
	}
}

// TestReconcileConditions: a record whose newest version is not for this
// device (platform) is as good as gone for it.
func TestReconcileConditions(t *testing.T) {
	rs := mustStartReconcile(t)
	e := syncpoint.Entry{Channel: notesU1, Op: syncpoint.OpPut, Key: "ios-only", Data: json.RawMessage(`1`), Origin: syncpoint.OriginAPI, Conditions: syncpoint.Conditions{Platforms: []string{"ios"}}}
	if _, err := rs.store.Append(context.Background(), []syncpoint.AppendRequest{{Entry: e, Policy: syncpoint.Policy{Compact: true}}}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", rs.URL+"/v1/sync/reconcile", strings.NewReader(`{"biz":"notes","records":[{"id":"ios-only","seq":1}]}`))
	req.Header.Set("Authorization", "Bearer "+rs.token)
	req.Header.Set("X-Device-Id", "d-android")
	req.Header.Set("X-Device-Platform", "android")
	resp, err := rs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var a reconcileAnswer
	json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	wantAnswer(t, "android", a, []string{}, []string{}, []string{}, []string{"ios-only"})
	// The device is registered with what it said.
	if d, err := rs.store.Device(context.Background(), "d-android"); err != nil || d.UserID != "u1" || d.Platform != "android" {
		t.Fatalf("device %+v %v", d, err)
	}
}

func TestReconcileRefusals(t *testing.T) {
	rs := mustStartReconcile(t)
	rs.append(t, notesU1, `a=1`)
	ok := `{"biz":"notes","records":[]}`
	if r := rs.reconcile(t, rs.token, "d1", ok); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	wantError(t, rs.reconcile(t, "", "d1", ok), 401, "unauthorized", "Bearer")
	wantError(t, rs.reconcile(t, "not-a-token", "d1", ok), 401, "unauthorized", "")
	wantError(t, rs.reconcile(t, strings.Repeat("A", 64), "d1", ok), 401, "unauthorized", "unknown, revoked or expired")
	wantError(t, rs.reconcile(t, testKey, "d1", ok), 401, "unauthorized", "")
	wantError(t, rs.reconcile(t, rs.token, "", ok), 422, "invalid", "X-Device-Id")
	wantError(t, rs.reconcile(t, rs.token, "bad id", ok), 422, "invalid", "device id")
	wantError(t, rs.reconcile(t, mintJWT(t, "u2"), "d1", ok), 403, "forbidden", "another user")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","scope":{"user":"u2"}}`), 403, "forbidden", "notes/user:u2")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"shared","scope":{"group":"g2"}}`), 403, "forbidden", "group:g2")
	if r := rs.reconcile(t, rs.token, "d1", `{"biz":"shared","scope":{"group":"g1"}}`); r.status != 200 {
		t.Fatalf("a granted group: %d %s", r.status, r.body)
	}
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"shared"}`), 422, "invalid", "name the group")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","scope":{"group":"g1"}}`), 422, "invalid", "user targets")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"nope"}`), 404, "not_found", "nope")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"plain"}`), 422, "invalid", "compact")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"typing"}`), 422, "invalid", "compact")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes",`), 400, "malformed", "")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","extra":1}`), 422, "invalid", "unknown field")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","records":[{"id":"a","seq":1},{"id":"a","seq":2}]}`), 422, "invalid", "twice")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","after_id":"m","records":[{"id":"a","seq":1}]}`), 422, "invalid", "outside")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","up_to_id":"b","records":[{"id":"c","seq":1}]}`), 422, "invalid", "outside")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","after_id":"b","up_to_id":"b"}`), 422, "invalid", "not above")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","records":[{"id":"a","seq":1,"hash":"short"}]}`), 422, "invalid", "hash")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","records":[{"id":"","seq":1}]}`), 422, "invalid", "records[0].id")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","records":[{"id":"a","seq":-1}]}`), 422, "invalid", "seq")
	wantError(t, rs.reconcile(t, rs.token, "d1", `{"biz":"notes","position":{"epoch":"","seq":5}}`), 422, "invalid", "position")

	var many strings.Builder
	many.WriteString(`{"biz":"notes","records":[`)
	for i := range MaxReconcileRecords + 1 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `{"id":"r%06d","seq":1}`, i)
	}
	many.WriteString(`]}`)
	wantError(t, rs.reconcile(t, rs.token, "d1", many.String()), 413, "too_large", "pages")

	// A reset between two pages: the later page is refused, so the device
	// starts over rather than mixing two histories.
	first := rs.answer(t, ok)
	if _, err := rs.store.ResetChannel(context.Background(), notesU1); err != nil {
		t.Fatal(err)
	}
	rs.append(t, notesU1, `a=2`)
	later := fmt.Sprintf(`{"biz":"notes","position":{"epoch":%q,"seq":%d},"after_id":"a"}`, first.Position.Epoch, first.Position.Seq)
	wantError(t, rs.reconcile(t, rs.token, "d1", later), 409, "conflict", "start again")
	info, _ := rs.store.Channel(context.Background(), notesU1)
	wantError(t, rs.reconcile(t, rs.token, "d1", fmt.Sprintf(`{"biz":"notes","position":{"epoch":%q,"seq":99}}`, info.Epoch)), 422, "invalid", "beyond")
}

// TestReconcileUnknownChannel: a device holding records of a channel the
// server has nothing of deletes them all, and syncs from seq 0.
func TestReconcileUnknownChannel(t *testing.T) {
	rs := mustStartReconcile(t)
	a := rs.answer(t, `{"biz":"notes","epoch":"gone","records":[{"id":"a","seq":3},{"id":"b","seq":4}]}`)
	wantAnswer(t, "unknown channel", a, []string{}, []string{}, []string{}, []string{"a", "b"})
	if a.Position != (answerPosition{Channel: "notes/user:u1"}) {
		t.Fatalf("position %+v", a.Position)
	}
}
