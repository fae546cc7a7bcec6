package httpapi

import (
	"encoding/json"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/internal/jsonbody"
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
func decodeStrict(data []byte, v any) error { return jsonbody.Decode(data, v) }

// decodePublish decodes and checks a publish body. Everything that does not
// depend on the biz is checked here (apiclient.PublishRequest.Check), so a
// request it returns can fail only in the publisher: on the biz (unknown,
// wrong target kind, entry size, ttl over retention) or the target cap.
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
		// Absent or null: a client that forgot the list would otherwise
		// get 200 and think it published.
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
	targets, ttl, err := b.Check()
	if err != nil {
		return publish.Request{}, err
	}
	req := publish.Request{
		Biz:     b.Biz,
		Targets: targets,
		Op:      b.Op,
		Key:     b.Key,
		Data:    b.Data,
		TTL:     ttl,
		Conditions: syncpoint.Conditions{
			Platforms:     b.Platforms,
			MinAppVersion: b.MinAppVersion,
			MaxAppVersion: b.MaxAppVersion,
		},
		IdempotencyKey: b.IdempotencyKey,
	}
	if string(req.Data) == "null" {
		req.Data = nil
	}
	if req.Op == "" {
		req.Op = syncpoint.OpMsg
	}
	return req, nil
}
