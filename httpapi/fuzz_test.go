package httpapi

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/publish"
)

var publishSeeds = []string{
	`{"biz":"chat","users":["u1","u2"],"data":{"text":"hi"}}`,
	`{"biz":"config","global":true,"op":"put","key":"k","data":[1,2],"ttl":"24h"}`,
	`{"biz":"chat","devices":["d1"],"groups":["g1"],"platforms":["ios"],"min_app_version":"1.0.0","max_app_version":"2.0.0","idempotency_key":"x"}`,
	`{"biz":"chat","users":["u1"],"op":"delete","key":"k","data":null}`,
	`{"biz":"chat","users":["u1"],"ttl":"-5s"}`,
	`{"biz":"chat","users":"u1"}`,
	`{"biz":"chat","users":["u1"]} trailing`,
	`{"biz":"chat","users":["u1"],"unknown":1}`,
	`{"biz":"Chat","users":[""]}`,
	`[]`, `null`, `"str"`, `{`, ``, `{"data":1e999}`,
}

// checkDecoded fails unless err is a clean *syncpoint.Error or req is a
// request whose biz-independent fields are valid.
func checkDecoded(t *testing.T, req publish.Request, err error) {
	t.Helper()
	if err != nil {
		var se *syncpoint.Error
		if !errors.As(err, &se) || se.Message == "" {
			t.Fatalf("error %v (%T) is not a *syncpoint.Error with a message", err, err)
		}
		if _, ok := statusOf[se.Code]; !ok {
			t.Fatalf("error code %q has no HTTP status", se.Code)
		}
		return
	}
	if len(req.Targets) == 0 || !req.Op.Valid() || req.TTL < 0 {
		t.Fatalf("decoded an invalid request: %+v", req)
	}
	for _, tg := range req.Targets {
		ch := syncpoint.Channel{Biz: req.Biz, Target: tg}
		if err := ch.Validate(); err != nil {
			t.Fatalf("decoded an invalid channel %v: %v", ch, err)
		}
	}
	if len(req.Data) > 0 && !json.Valid(req.Data) {
		t.Fatalf("decoded invalid data %q", req.Data)
	}
	if err := req.Conditions.Validate(); err != nil {
		t.Fatalf("decoded invalid conditions: %v", err)
	}
}

func FuzzDecodePublish(f *testing.F) {
	for _, s := range publishSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodePublish(data)
		checkDecoded(t, req, err)
	})
}

func FuzzDecodeBatch(f *testing.F) {
	for _, s := range publishSeeds {
		f.Add([]byte(`{"publishes":[` + s + `]}`))
	}
	f.Add([]byte(`{"publishes":[]}`))
	f.Add([]byte(`{"publishes":null}`))
	f.Add([]byte(`{"publishes":[1,"x",{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs, errs, err := decodeBatch(data)
		if err != nil {
			checkDecoded(t, publish.Request{}, err)
			return
		}
		if len(reqs) != len(errs) || len(reqs) > MaxBatch {
			t.Fatalf("%d requests, %d errors", len(reqs), len(errs))
		}
		for i := range reqs {
			checkDecoded(t, reqs[i], errs[i])
		}
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\", "\x00\x7f\xff", "日本", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAppendString(t, s)
	})
}

// FuzzParsePublish holds the hand-written publish decoder to encoding/json:
// the same bodies parse, to the same fields, and the same ones fail, as
// malformed or as invalid alike. The allowed differences: field names match
// exactly, where encoding/json folds case; and a body that breaks I-JSON is
// refused where the JSON reader (held to a reference in its own fuzzer)
// finds the break, whatever encoding/json makes of it.
func FuzzParsePublish(f *testing.F) {
	for _, s := range publishSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"biz":"a\u00e9\ud83d\ude00\ud800x\"\\\/\b\f\n\r\t","users":["\u0041"]}`,
		`{"data":{"a":[1,-2.5e+3,true,false,null,"s"]},"data":[]}`,
		`{"users":["a","b"],"users":[null]}`,
		`{"users":["a",1]}`, `{"global":"yes"}`, `{"biz":1} x`, `1x`, `{"biz":"chat"}x`,
		`{"data":01}`, `{"data":-}`, `{"data":1.}`, `{"data":1e}`, "{\"biz\":\"a\xffb\"}",
		`{"BIZ":"chat"}`, ` null `, `{"op":null,"op":"put"}`, `{"a":1,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got, want apiclient.PublishRequest
		gotErr := parsePublishBody(data, &got)
		if ij := checkIJSON(data); ij != nil || strings.Contains(syncpoint.Message(gotErr), "not I-JSON") {
			if syncpoint.Message(gotErr) != syncpoint.Message(ij) {
				t.Fatalf("%q: error %v; the reader finds %v", data, gotErr, ij)
			}
			return
		}
		wantErr := decodeStrict(data, &want)
		if gotErr == nil && wantErr == nil {
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("parsed %q as\n%+v\nencoding/json gives\n%+v", data, got, want)
			}
			return
		}
		if foldedField(gotErr) {
			return // encoding/json took a field whose name matches with case folded
		}
		if gotErr != nil && wantErr != nil {
			if g, w := syncpoint.Code(gotErr), syncpoint.Code(wantErr); g != w {
				t.Fatalf("%q: error %v, encoding/json's is %v", data, gotErr, wantErr)
			}
			return
		}
		t.Fatalf("%q: error %v, encoding/json's is %v", data, gotErr, wantErr)
	})
}

// foldedField reports whether err is an unknown field whose name equals a
// publish field's with case folded.
func foldedField(err error) bool {
	name, ok := strings.CutPrefix(syncpoint.Message(err), "unknown field ")
	if !ok || err == nil {
		return false
	}
	name, uerr := strconv.Unquote(name)
	if uerr != nil {
		return false
	}
	rt := reflect.TypeFor[apiclient.PublishRequest]()
	for i := range rt.NumField() {
		if tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ","); strings.EqualFold(tag, name) {
			return true
		}
	}
	return false
}
