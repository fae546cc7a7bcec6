package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/publish"
)

// MaxBatch is the most publishes one POST /v1/publish/batch may carry.
const MaxBatch = 1000

// batchBody is the JSON body of POST /v1/publish/batch, with each item
// left raw so that an item that is wrong fails alone. The items are
// apiclient.PublishRequest, decoded by parsePublishBody.
type batchBody struct {
	Publishes []json.RawMessage `json:"publishes"`
}

// decodeStrict decodes one JSON value from data into v, refusing unknown
// fields and trailing data. Errors are *syncpoint.Error saying where.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return jsonError(err)
	}
	return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON at byte offset %d: data after the top-level value", dec.InputOffset()-int64(len(extra)))
}

// decodePublish decodes and checks a publish body. Everything that does not
// depend on the biz is checked here, so a request it returns can fail only
// on the biz (unknown, wrong target kind, entry size, ttl over retention).
// Errors are *syncpoint.Error.
func decodePublish(data []byte) (publish.Request, error) {
	var b apiclient.PublishRequest
	if err := parsePublishBody(data, &b); err != nil {
		return publish.Request{}, err
	}
	return toRequest(&b)
}

// decodeBatch decodes a batch body. A body that does not parse fails as a
// whole; an item that is wrong fails alone, in errs[i].
func decodeBatch(data []byte) (reqs []publish.Request, errs []error, err error) {
	var b batchBody
	if err := decodeStrict(data, &b); err != nil {
		return nil, nil, err
	}
	if b.Publishes == nil {
		// Absent or null: a client that misspelled nothing but forgot the
		// list would otherwise get 200 and think it published.
		return nil, nil, syncpoint.Errorf(syncpoint.CodeInvalid, "publishes is required: give a list of publishes (it may be empty)")
	}
	if len(b.Publishes) > MaxBatch {
		return nil, nil, syncpoint.Errorf(syncpoint.CodeTooLarge, "publishes: %d given; a batch takes at most %d", len(b.Publishes), MaxBatch)
	}
	reqs = make([]publish.Request, len(b.Publishes))
	errs = make([]error, len(b.Publishes))
	for i, raw := range b.Publishes {
		var pb apiclient.PublishRequest
		if err := parsePublishBody(raw, &pb); err != nil {
			errs[i] = err
			continue
		}
		reqs[i], errs[i] = toRequest(&pb)
	}
	return reqs, errs, nil
}

// toRequest checks what of b does not depend on the biz and turns it into
// the publisher's request.
func toRequest(b *apiclient.PublishRequest) (publish.Request, error) {
	if err := syncpoint.ValidateBizName(b.Biz); err != nil {
		return publish.Request{}, err
	}
	n := len(b.Users) + len(b.Devices) + len(b.Groups)
	if b.Global {
		n++
	}
	if n == 0 {
		return publish.Request{}, syncpoint.Errorf(syncpoint.CodeInvalid, "no target: give users, devices, groups or global")
	}
	targets := make([]syncpoint.Target, 0, n)
	for _, l := range []struct {
		kind syncpoint.TargetKind
		ids  []string
	}{{syncpoint.TargetUser, b.Users}, {syncpoint.TargetDevice, b.Devices}, {syncpoint.TargetGroup, b.Groups}} {
		for _, id := range l.ids {
			t := syncpoint.Target{Kind: l.kind, ID: id}
			if err := t.Validate(); err != nil {
				return publish.Request{}, err
			}
			targets = append(targets, t)
		}
	}
	if b.Global {
		targets = append(targets, syncpoint.GlobalTarget())
	}

	var ttl time.Duration
	if b.TTL != "" {
		d, err := time.ParseDuration(b.TTL)
		if err != nil || d <= 0 {
			return publish.Request{}, syncpoint.Errorf(syncpoint.CodeInvalid, "ttl %q: want a positive duration such as 90s or 24h", b.TTL)
		}
		ttl = d
	}
	data := b.Data
	if string(data) == "null" {
		data = nil
	}
	req := publish.Request{
		Biz:     b.Biz,
		Targets: targets,
		Op:      b.Op,
		Key:     b.Key,
		Data:    data,
		TTL:     ttl,
		Conditions: syncpoint.Conditions{
			Platforms:     b.Platforms,
			MinAppVersion: b.MinAppVersion,
			MaxAppVersion: b.MaxAppVersion,
		},
		IdempotencyKey: b.IdempotencyKey,
	}
	if req.Op == "" {
		req.Op = syncpoint.OpMsg
	}
	// The entry checks that do not depend on the biz: op, key, idempotency
	// key and conditions. The size limit is the biz's, checked on publish.
	probe := syncpoint.Entry{
		Channel:        syncpoint.Channel{Biz: b.Biz, Target: targets[0]},
		Op:             req.Op,
		Key:            req.Key,
		Data:           req.Data,
		Conditions:     req.Conditions,
		IdempotencyKey: req.IdempotencyKey,
	}
	if err := probe.Validate(math.MaxInt); err != nil {
		return publish.Request{}, err
	}
	return req, nil
}
