package apiclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"testing"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/server"
)

// MustRunServer runs a real server with a chat biz on 127.0.0.1:0 and
// returns a client of it.
func MustRunServer(tb testing.TB) *apiclient.Client {
	tb.Helper()
	srv, err := server.New(server.Config{
		DataDir:     tb.TempDir(),
		Listen:      "127.0.0.1:0",
		APIKey:      "key",
		TokenSecret: "0123456789abcdef0123",
		Bizzes:      []syncpoint.Biz{syncpoint.NewBiz("chat", syncpoint.TargetUser)},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return &apiclient.Client{BaseURL: "http://" + srv.Addr() + "/", APIKey: "key"}
}

func TestClient(t *testing.T) {
	c := MustRunServer(t)
	ctx := t.Context()
	resp, err := c.Publish(ctx, &apiclient.PublishRequest{Biz: "chat", Users: []string{"u1", "u2"}, Data: json.RawMessage(` {"text":"hi"} `), IdempotencyKey: "m1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 2 || resp.Entries[0].Channel != "chat/user:u1" || resp.Entries[0].Seq != 1 || resp.Entries[0].Epoch == "" || resp.Err() != nil {
		t.Fatalf("publish = %+v", resp)
	}

	batch, err := c.PublishBatch(ctx, []apiclient.PublishRequest{
		{Biz: "chat", Users: []string{"u1"}, IdempotencyKey: "m1", Data: json.RawMessage(`{"text":"hi"}`)},
		{Biz: "nope", Users: []string{"u1"}},
		{Biz: "chat", Users: []string{"u1"}, Op: syncpoint.OpPut, Key: "k", TTL: "1h", Platforms: []string{"ios"}, MinAppVersion: "1.0.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := batch.Results
	if len(r) != 3 || !r[0].Entries[0].Duplicate || r[0].Entries[0].Seq != 1 ||
		r[1].Error == nil || r[1].Error.Code != syncpoint.CodeNotFound || r[2].Entries[0].Seq != 2 {
		t.Fatalf("batch = %+v", batch)
	}

	var page struct {
		LastSeq uint64 `json:"last_seq"`
	}
	if err := c.Call(ctx, http.MethodGet, "/v1/channels/chat/user:u1", nil, &page); err != nil || page.LastSeq != 2 {
		t.Fatalf("read = %+v, %v", page, err)
	}

	bad := *c
	bad.APIKey = "wrong"
	_, err = bad.Publish(ctx, &apiclient.PublishRequest{Biz: "chat", Users: []string{"u1"}})
	var se *apiclient.StatusError
	if !errors.As(err, &se) || se.Status != 401 || se.Code != syncpoint.CodeUnauthorized || se.Message == "" {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := c.Do(ctx, http.MethodGet, "/nothing", nil); !errors.As(err, &se) || se.Status != 404 {
		t.Fatalf("unknown path: %v", err)
	}
}

// FuzzAppendJSON holds the hand-written encoder to encoding/json: both
// bodies decode to the same request.
func FuzzAppendJSON(f *testing.F) {
	f.Add("chat", "u1", "", "k", "24h", true, []byte(` {"a":[1,2]} `))
	f.Add("", "", "g\"1", "\x00\xff", "", false, []byte(`null`))
	f.Add("x", "é", "", "", "", false, []byte(`not json`))
	f.Fuzz(func(t *testing.T, biz, user, group, key, ttl string, global bool, data []byte) {
		r := apiclient.PublishRequest{Biz: biz, Global: global, Key: key, TTL: ttl, Op: syncpoint.Op(key), IdempotencyKey: ttl, MinAppVersion: user}
		if user != "" {
			r.Users = []string{user, group}
		}
		if group != "" {
			r.Groups, r.Platforms = []string{group}, []string{user}
		}
		if json.Valid(data) {
			r.Data = data
		}
		mine := r.AppendJSON([]byte("x"))[1:]
		ref, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		var got, want apiclient.PublishRequest
		if err := json.Unmarshal(mine, &got); err != nil {
			t.Fatalf("%s: %v", mine, err)
		}
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		var gd, wd bytes.Buffer
		if len(got.Data) > 0 {
			json.Compact(&gd, got.Data)
			json.Compact(&wd, want.Data)
		}
		got.Data, want.Data = nil, nil
		if !reflect.DeepEqual(got, want) || gd.String() != wd.String() {
			t.Fatalf("AppendJSON wrote %s, encoding/json %s", mine, ref)
		}
	})
}
