package httpapi

import (
	"errors"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

// checkClientError fails unless err is a *syncpoint.Error with a message
// and an HTTP status.
func checkClientError(t *testing.T, err error) {
	t.Helper()
	var se *syncpoint.Error
	if !errors.As(err, &se) || se.Message == "" {
		t.Fatalf("error %v (%T) is not a *syncpoint.Error with a message", err, err)
	}
	if _, ok := statusOf[se.Code]; !ok {
		t.Fatalf("error code %q has no HTTP status", se.Code)
	}
}

// FuzzDecodeReconcile: a reconcile body either fails with a client error,
// or decodes into a request whose records are valid, unique, sorted and
// inside the page's range.
func FuzzDecodeReconcile(f *testing.F) {
	for _, s := range []string{
		`{"biz":"notes","records":[{"id":"a","seq":1},{"id":"b","seq":2,"hash":"AAAAAAAAAAAAAAAA"}]}`,
		`{"biz":"notes","scope":{"group":"g1"},"epoch":"e1","position":{"epoch":"e1","seq":9},"after_id":"a","up_to_id":"m","records":[{"id":"c","seq":3}]}`,
		`{"biz":"notes","records":[{"id":"b","seq":1},{"id":"a","seq":1}]}`,
		`{"biz":"notes","records":[{"id":"a","seq":1},{"id":"a","seq":1}]}`,
		`{"biz":"notes","after_id":"z","records":[{"id":"a","seq":1}]}`,
		`{"biz":"notes","scope":{"user":"u1","device":"d1"}}`,
		`{"biz":"notes","records":[{"id":"a\u0001","seq":1}]}`,
		`{"biz":"notes","records":[{"id":"a","seq":1e3}]}`,
		`{"biz":"notes","records":null}`,
		`{"biz":"Notes"}`, `{}`, `[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeReconcile(body)
		if err != nil {
			checkClientError(t, err)
			return
		}
		if syncpoint.ValidateBizName(req.Biz) != nil || len(req.Records) > MaxReconcileRecords {
			t.Fatalf("decoded a bad request: %+v", req)
		}
		if req.UpToID != nil && *req.UpToID <= req.AfterID {
			t.Fatalf("decoded an empty range (%q, %q]", req.AfterID, *req.UpToID)
		}
		for i, r := range req.Records {
			if validRecordID("id", r.ID) != nil || r.ID <= req.AfterID || req.UpToID != nil && r.ID > *req.UpToID {
				t.Fatalf("record %d %+v is bad or outside the range", i, r)
			}
			if i > 0 && req.Records[i-1].ID >= r.ID {
				t.Fatalf("records not sorted and unique at %d", i)
			}
			if r.Hash != "" && !validHash(r.Hash) {
				t.Fatalf("record %d has a bad hash %q", i, r.Hash)
			}
		}
	})
}

// FuzzDecodeTokenInput: a POST /v1/tokens body either fails with a client
// error or gives a user, groups, label and ttl that mint a valid token.
func FuzzDecodeTokenInput(f *testing.F) {
	for _, s := range []string{
		`{"user":"u1","groups":["g1","g2"],"ttl":"24h","label":"Ada's phone"}`,
		`{"user":"u1"}`,
		`{"user":"u1","ttl":"1m"}`, `{"user":"u1","ttl":"59s"}`, `{"user":"u1","ttl":"8761h"}`,
		`{"user":"u1","label":"\u0007"}`, `{"user":"u1","groups":[""]}`, `{"user":""}`,
		`{"user":"u1","token":"x"}`, `{"user":1}`, `{`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, ttl, err := decodeTokenInput(body)
		if err != nil {
			checkClientError(t, err)
			return
		}
		if ttl < MinTokenTTL || ttl > MaxTokenTTL {
			t.Fatalf("ttl %s out of bounds", ttl)
		}
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		tok := syncpoint.AccessToken{ID: "tok-0123456789abcdef01234567", Hash: make([]byte, 32), User: in.User, Groups: in.Groups, Label: in.Label, CreatedAt: now, ExpiresAt: now.Add(ttl)}
		if err := tok.Validate(); err != nil {
			t.Fatalf("decoded %+v, which makes an invalid token: %v", in, err)
		}
	})
}
