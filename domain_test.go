package syncpoint_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/pebble"
)

func TestParseChannel(t *testing.T) {
	good := map[string]syncpoint.Channel{
		"chat/user:u1":                  {Biz: "chat", Target: syncpoint.UserTarget("u1")},
		"config/global":                 {Biz: "config", Target: syncpoint.GlobalTarget()},
		"team-x/group:g_1":              {Biz: "team-x", Target: syncpoint.GroupTarget("g_1")},
		"inbox/device:ab:cd@e.f+1=2~3-": {Biz: "inbox", Target: syncpoint.DeviceTarget("ab:cd@e.f+1=2~3-")},
	}
	for s, want := range good {
		got, err := syncpoint.ParseChannel(s)
		if err != nil || got != want || got.String() != s {
			t.Errorf("ParseChannel(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	bad := []string{"", "chat", "chat/", "/user:u1", "Chat/user:u1", "chat/user:", "chat/user", "chat/robot:r1",
		"chat/global:x", "chat/user:a/b", "chat/user:a b", "chat/user:" + strings.Repeat("x", 129), "1chat/global"}
	for _, s := range bad {
		if _, err := syncpoint.ParseChannel(s); syncpoint.Code(err) != syncpoint.CodeInvalid {
			t.Errorf("ParseChannel(%q): err %v, want an invalid error", s, err)
		}
	}
}

func TestChannelJSONRoundTrip(t *testing.T) {
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	b, err := json.Marshal(ch)
	if err != nil || string(b) != `"chat/user:u1"` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	var back syncpoint.Channel
	if err := json.Unmarshal(b, &back); err != nil || back != ch {
		t.Fatalf("unmarshal: %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`"nope"`), &back); err == nil {
		t.Fatal("unmarshal of a bad channel succeeded")
	}
}

func TestConditionsMatch(t *testing.T) {
	cases := []struct {
		c        syncpoint.Conditions
		platform string
		version  string
		want     bool
	}{
		{syncpoint.Conditions{}, "", "", true},
		{syncpoint.Conditions{Platforms: []string{"ios", "android"}}, "Android", "1.0.0", true},
		{syncpoint.Conditions{Platforms: []string{"ios"}}, "web", "1.0.0", false},
		{syncpoint.Conditions{MinAppVersion: "1.2.0"}, "ios", "1.10.0", true}, // numeric, not lexical
		{syncpoint.Conditions{MinAppVersion: "1.2.0"}, "ios", "1.1.9", false},
		{syncpoint.Conditions{MaxAppVersion: "2.0"}, "ios", "2.0.0", true}, // inclusive
		{syncpoint.Conditions{MaxAppVersion: "2.0"}, "ios", "2.0.1", false},
		{syncpoint.Conditions{MinAppVersion: "1.0.0"}, "ios", "garbage", false},
		{syncpoint.Conditions{MinAppVersion: "1.0.0"}, "ios", "v1.0.0", true},
		{syncpoint.Conditions{MinAppVersion: "1.0.0"}, "ios", "1.0.0-beta", false}, // a prerelease sorts below
	}
	for _, tc := range cases {
		if got := tc.c.Match(tc.platform, tc.version); got != tc.want {
			t.Errorf("%+v.Match(%q, %q) = %v, want %v", tc.c, tc.platform, tc.version, got, tc.want)
		}
	}
}

func TestConditionsValidate(t *testing.T) {
	bad := []syncpoint.Conditions{
		{MinAppVersion: "one"},
		{MinAppVersion: "2.0.0", MaxAppVersion: "1.0.0"},
		{Platforms: []string{""}},
		{Platforms: []string{"has space"}},
		{Platforms: make([]string, syncpoint.MaxPlatforms+1)},
	}
	for _, c := range bad {
		if err := c.Validate(); syncpoint.Code(err) != syncpoint.CodeInvalid {
			t.Errorf("%+v: err %v, want invalid", c, err)
		}
	}
}

func TestEntryValidate(t *testing.T) {
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	ok := syncpoint.Entry{Channel: ch, Op: syncpoint.OpMsg, Data: json.RawMessage(`{"a":1}`)}
	if err := ok.Validate(0); err != nil {
		t.Fatalf("valid entry: %v", err)
	}
	cases := map[string]struct {
		mod  func(*syncpoint.Entry)
		max  int
		code syncpoint.ErrorCode
	}{
		"unknown op":       {func(e *syncpoint.Entry) { e.Op = "upsert" }, 0, syncpoint.CodeInvalid},
		"put without key":  {func(e *syncpoint.Entry) { e.Op = syncpoint.OpPut }, 0, syncpoint.CodeInvalid},
		"key with newline": {func(e *syncpoint.Entry) { e.Key = "a\nb" }, 0, syncpoint.CodeInvalid},
		"data not JSON":    {func(e *syncpoint.Entry) { e.Data = json.RawMessage(`{`) }, 0, syncpoint.CodeInvalid},
		"data bad UTF-8":   {func(e *syncpoint.Entry) { e.Data = json.RawMessage("\"\xff\"") }, 0, syncpoint.CodeInvalid},
		// Valid for encoding/json, but not deliverable: the wire encoders
		// hold data to I-JSON.
		"data lone surrogate": {func(e *syncpoint.Entry) { e.Data = json.RawMessage(`"\ud800"`) }, 0, syncpoint.CodeInvalid},
		"data number too big": {func(e *syncpoint.Entry) { e.Data = json.RawMessage(`1e400`) }, 0, syncpoint.CodeInvalid},
		"over the biz size":   {func(e *syncpoint.Entry) {}, 4, syncpoint.CodeTooLarge},
		"bad channel":         {func(e *syncpoint.Entry) { e.Channel.Biz = "" }, 0, syncpoint.CodeInvalid},
	}
	for name, tc := range cases {
		e := ok
		tc.mod(&e)
		if err := e.Validate(tc.max); syncpoint.Code(err) != tc.code {
			t.Errorf("%s: err %v, want %s", name, err, tc.code)
		}
	}
}

func TestPositionCheck(t *testing.T) {
	info := syncpoint.ChannelInfo{Epoch: "e1", FirstSeq: 5, LastSeq: 10}
	cases := []struct {
		pos    syncpoint.Position
		status syncpoint.Status
		from   uint64
	}{
		{syncpoint.Position{}, syncpoint.StatusGap, 4},                       // fresh device, history trimmed
		{syncpoint.Position{Epoch: "e1", Seq: 4}, syncpoint.StatusOK, 4},     // exactly at the edge
		{syncpoint.Position{Epoch: "e1", Seq: 3}, syncpoint.StatusGap, 4},    // seq 4 is gone
		{syncpoint.Position{Epoch: "e1", Seq: 10}, syncpoint.StatusOK, 10},   // caught up
		{syncpoint.Position{Epoch: "e0", Seq: 7}, syncpoint.StatusReset, 0},  // another epoch
		{syncpoint.Position{Epoch: "e1", Seq: 11}, syncpoint.StatusReset, 0}, // ahead: the store lost history
	}
	for _, tc := range cases {
		status, from := info.Check(tc.pos)
		if status != tc.status || from != tc.from {
			t.Errorf("Check(%+v) = %s, %d; want %s, %d", tc.pos, status, from, tc.status, tc.from)
		}
	}
	fresh := syncpoint.ChannelInfo{FirstSeq: 1}
	if status, from := fresh.Check(syncpoint.Position{}); status != syncpoint.StatusOK || from != 0 {
		t.Errorf("empty channel: %s %d", status, from)
	}
}

func TestBizDefaultsAndValidate(t *testing.T) {
	var b syncpoint.Biz
	if err := json.Unmarshal([]byte(`{"name":"chat","target":"user","retention":"1h"}`), &b); err != nil {
		t.Fatal(err)
	}
	if !b.Persistent || !b.MultiDevice || b.Conflict != syncpoint.ConflictReject || time.Duration(b.Retention) != time.Hour || b.EntryLimit() != syncpoint.DefaultMaxEntryBytes {
		t.Fatalf("defaults not applied: %+v", b)
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*syncpoint.Biz){
		"target":                 func(b *syncpoint.Biz) { b.Target = "planet" },
		"retention":              func(b *syncpoint.Biz) { b.Retention = 0 },
		"conflict":               func(b *syncpoint.Biz) { b.Conflict = "coin_flip" },
		"multi_device on global": func(b *syncpoint.Biz) { b.Target, b.MultiDevice = syncpoint.TargetGlobal, false },
		"writable ephemeral":     func(b *syncpoint.Biz) { b.Writable, b.Persistent = true, false },
		"webhook not writable":   func(b *syncpoint.Biz) { b.Webhook = &syncpoint.Webhook{NotifyURL: "http://x"} },
		"webhook bad url": func(b *syncpoint.Biz) {
			b.Writable, b.Webhook = true, &syncpoint.Webhook{ValidateURL: "ftp://x"}
		},
		"max_backlog":     func(b *syncpoint.Biz) { b.MaxBacklog = -1 },
		"reserved name":   func(b *syncpoint.Biz) { b.Name = syncpoint.ReservedBizPrefix + "uploads" },
		"max_entry_bytes": func(b *syncpoint.Biz) { b.MaxEntryBytes = 1 << 30 },
	}
	for name, mod := range bad {
		c := b
		mod(&c)
		if err := c.Validate(); syncpoint.Code(err) != syncpoint.CodeInvalid {
			t.Errorf("%s: err %v, want invalid", name, err)
		}
	}
	if err := json.Unmarshal([]byte(`{"retention":"forever"}`), &b); err == nil {
		t.Error("a retention of \"forever\" parsed")
	}
}

func TestIdentityAuthorization(t *testing.T) {
	id := syncpoint.Identity{DeviceID: "d1", UserID: "u1", Groups: []string{"g1"}}
	user, group := syncpoint.NewBiz("chat", syncpoint.TargetUser), syncpoint.NewBiz("team", syncpoint.TargetGroup)
	dev, global := syncpoint.NewBiz("inbox", syncpoint.TargetDevice), syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	ch := func(b syncpoint.Biz, t syncpoint.Target) syncpoint.Channel {
		return syncpoint.Channel{Biz: b.Name, Target: t}
	}
	cases := []struct {
		b    syncpoint.Biz
		ch   syncpoint.Channel
		want bool
	}{
		{user, ch(user, syncpoint.UserTarget("u1")), true},
		{user, ch(user, syncpoint.UserTarget("u2")), false},
		{group, ch(group, syncpoint.GroupTarget("g1")), true},
		{group, ch(group, syncpoint.GroupTarget("g2")), false},
		{dev, ch(dev, syncpoint.DeviceTarget("d1")), true},
		{dev, ch(dev, syncpoint.DeviceTarget("d2")), false},
		{global, ch(global, syncpoint.GlobalTarget()), true},
		{user, ch(group, syncpoint.GroupTarget("g1")), false}, // channel of another biz
	}
	for _, tc := range cases {
		if got := id.CanRead(tc.b, tc.ch); got != tc.want {
			t.Errorf("CanRead(%s, %s) = %v, want %v", tc.b.Name, tc.ch, got, tc.want)
		}
	}
	if id.CanWrite(user, ch(user, syncpoint.UserTarget("u1"))) {
		t.Error("wrote to a biz that is not writable")
	}
	user.Writable = true
	if !id.CanWrite(user, ch(user, syncpoint.UserTarget("u1"))) || id.CanWrite(user, ch(user, syncpoint.UserTarget("u2"))) {
		t.Error("writable biz: wrong write authorization")
	}
	if got := id.Channels(group); len(got) != 1 || got[0].String() != "team/group:g1" {
		t.Errorf("group channels = %v", got)
	}
	if _, ok := id.DefaultChannel(group); ok {
		t.Error("a group biz has no default channel")
	}
}

func TestRegistryConfigWinsAndPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() *pebble.Store {
		st, err := pebble.Open(dir, pebble.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	r := syncpoint.NewRegistry(st)
	if err := r.Load(ctx, []syncpoint.Biz{syncpoint.NewBiz("chat", syncpoint.TargetUser)}); err != nil {
		t.Fatal(err)
	}
	runtime := syncpoint.NewBiz("posts", syncpoint.TargetGroup)
	if err := r.Put(ctx, runtime); err != nil {
		t.Fatal(err)
	}
	changed := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	changed.MaxBacklog = 7
	if err := r.Put(ctx, changed); err != nil {
		t.Fatal(err)
	}
	if bad := syncpoint.NewBiz("Bad", syncpoint.TargetUser); r.Put(ctx, bad) == nil {
		t.Fatal("an invalid biz was accepted")
	}
	if err := r.Delete(ctx, "nope"); syncpoint.Code(err) != syncpoint.CodeNotFound {
		t.Fatalf("delete unknown: %v", err)
	}
	st.Close()

	st = open()
	defer st.Close()
	r = syncpoint.NewRegistry(st)
	if err := r.Load(ctx, []syncpoint.Biz{syncpoint.NewBiz("chat", syncpoint.TargetUser)}); err != nil {
		t.Fatal(err)
	}
	if b, _ := r.Get("chat"); b.MaxBacklog != 0 {
		t.Error("the run-time change to chat survived a restart; the config file must win")
	}
	if _, ok := r.Get("posts"); !ok {
		t.Error("a biz created at run time was lost on restart")
	}
	if names := r.List(); len(names) != 2 || names[0].Name != "chat" {
		t.Errorf("List = %v", names)
	}
}

func TestErrorsNeverLeakInternals(t *testing.T) {
	internal := errorString("disk /var/lib/x: input/output error")
	if syncpoint.Code(internal) != syncpoint.CodeInternal || strings.Contains(syncpoint.Message(internal), "disk") {
		t.Fatalf("internal error leaked: %s", syncpoint.Message(internal))
	}
	wrapped := wrap(syncpoint.Errorf(syncpoint.CodeTooLarge, "entry is 5 bytes"))
	if syncpoint.Code(wrapped) != syncpoint.CodeTooLarge || syncpoint.Message(wrapped) != "entry is 5 bytes" {
		t.Fatalf("wrapped error: %s %s", syncpoint.Code(wrapped), syncpoint.Message(wrapped))
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

type wrapper struct{ err error }

func (w wrapper) Error() string { return "op: " + w.err.Error() }
func (w wrapper) Unwrap() error { return w.err }

func wrap(err error) error { return wrapper{err} }

func TestEntryContentHash(t *testing.T) {
	base := syncpoint.Entry{
		Channel: syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}, Op: syncpoint.OpPut, Key: "k",
		Data: json.RawMessage(`{"a":1}`), Conditions: syncpoint.Conditions{Platforms: []string{"ios"}, MinAppVersion: "1.0"}, Origin: "api",
		CreatedAt: time.Unix(1, 0), ExpiresAt: time.Unix(2, 0), IdempotencyKey: "i",
	}
	same := base
	same.CreatedAt, same.ExpiresAt, same.Seq, same.Epoch, same.IdempotencyKey = time.Unix(9, 0), time.Time{}, 7, "e", "other"
	same.Channel.Target = syncpoint.UserTarget("u2")
	if base.ContentHash() != same.ContentHash() {
		t.Fatal("times, seq, epoch, channel or the key itself changed the content hash")
	}
	for name, fn := range map[string]func(e *syncpoint.Entry){
		"op":            func(e *syncpoint.Entry) { e.Op = syncpoint.OpMsg },
		"key":           func(e *syncpoint.Entry) { e.Key = "k2" },
		"data":          func(e *syncpoint.Entry) { e.Data = json.RawMessage(`{"a": 1}`) },
		"platforms":     func(e *syncpoint.Entry) { e.Conditions.Platforms = nil },
		"min version":   func(e *syncpoint.Entry) { e.Conditions.MinAppVersion = "" },
		"max version":   func(e *syncpoint.Entry) { e.Conditions.MaxAppVersion = "9" },
		"origin":        func(e *syncpoint.Entry) { e.Origin = "device:d1" },
		"field borders": func(e *syncpoint.Entry) { e.Key, e.Data = `k{"a":1`, json.RawMessage(`}`) },
	} {
		e := base
		e.Conditions.Platforms = slices.Clone(base.Conditions.Platforms)
		fn(&e)
		if e.ContentHash() == base.ContentHash() {
			t.Errorf("another %s gives the same content hash", name)
		}
	}
}
