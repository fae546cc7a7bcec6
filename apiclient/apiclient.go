// Package apiclient is a Go client of syncpoint's business API. It declares
// the API's publish request and answers once: the server's decoder, the
// syncpoint command and the load generator all use these types, so the
// three cannot drift apart.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// DefaultMaxResponseBytes bounds what Client reads of one answer; a full
// batch answer is well under it.
const DefaultMaxResponseBytes = 64 << 20

// PublishRequest is the body of POST /v1/publish and one item of
// POST /v1/publish/batch. At least one of Users, Devices, Groups and Global
// names a target.
type PublishRequest struct {
	Biz            string          `json:"biz"`
	Users          []string        `json:"users,omitempty"`
	Devices        []string        `json:"devices,omitempty"`
	Groups         []string        `json:"groups,omitempty"`
	Global         bool            `json:"global,omitempty"`
	Op             syncpoint.Op    `json:"op,omitempty"`
	Key            string          `json:"key,omitempty"`
	Data           json.RawMessage `json:"data,omitempty"`
	TTL            string          `json:"ttl,omitempty"` // a Go duration, such as "24h"
	Platforms      []string        `json:"platforms,omitempty"`
	MinAppVersion  string          `json:"min_app_version,omitempty"`
	MaxAppVersion  string          `json:"max_app_version,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// Check checks what of r does not depend on its biz, as the server does
// before it looks the biz up: the biz name, the targets, the op and key, the
// ttl, the data and the conditions. It returns the targets and the ttl
// parsed. Errors are *syncpoint.Error. A request it passes can still fail on
// its biz: unknown, of another target kind, an entry over the biz's size
// limit, a ttl over its retention, more targets than the server takes.
func (r *PublishRequest) Check() (targets []syncpoint.Target, ttl time.Duration, err error) {
	if err := syncpoint.ValidateBizName(r.Biz); err != nil {
		return nil, 0, syncpoint.WithField(err, "biz")
	}
	n := len(r.Users) + len(r.Devices) + len(r.Groups)
	if r.Global {
		n++
	}
	if n == 0 {
		return nil, 0, syncpoint.Errorf(syncpoint.CodeInvalid, "no target: give users, devices, groups or global")
	}
	targets = make([]syncpoint.Target, 0, n)
	for _, l := range []struct {
		kind  syncpoint.TargetKind
		field string
		ids   []string
	}{{syncpoint.TargetUser, "users", r.Users}, {syncpoint.TargetDevice, "devices", r.Devices}, {syncpoint.TargetGroup, "groups", r.Groups}} {
		for _, id := range l.ids {
			t := syncpoint.Target{Kind: l.kind, ID: id}
			if err := t.Validate(); err != nil {
				return nil, 0, syncpoint.WithField(err, l.field)
			}
			targets = append(targets, t)
		}
	}
	if r.Global {
		targets = append(targets, syncpoint.GlobalTarget())
	}
	if r.TTL != "" {
		d, err := time.ParseDuration(r.TTL)
		if err != nil || d <= 0 {
			return nil, 0, syncpoint.FieldErrorf(syncpoint.CodeInvalid, "ttl", "ttl %q: want a positive duration such as 90s or 24h", r.TTL)
		}
		ttl = d
	}
	op := r.Op
	if op == "" {
		op = syncpoint.OpMsg
	}
	data := r.Data
	if string(data) == "null" {
		data = nil
	}
	// The entry's own checks, but for the size limit, which is the biz's.
	probe := syncpoint.Entry{
		Channel:        syncpoint.Channel{Biz: r.Biz, Target: targets[0]},
		Op:             op,
		Key:            r.Key,
		Data:           data,
		Conditions:     syncpoint.Conditions{Platforms: r.Platforms, MinAppVersion: r.MinAppVersion, MaxAppVersion: r.MaxAppVersion},
		IdempotencyKey: r.IdempotencyKey,
	}
	if err := probe.Validate(math.MaxInt); err != nil {
		return nil, 0, err
	}
	return targets, ttl, nil
}

// AppendJSON appends r as JSON, with the fields json.Marshal would write.
// Data goes in as it is, so it must be valid JSON; the load generator
// builds its bodies this way to keep encoding out of its measurements.
func (r *PublishRequest) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"biz":`...)
	dst = jsontext.AppendString(dst, r.Biz)
	dst = appendStrings(dst, `,"users":`, r.Users)
	dst = appendStrings(dst, `,"devices":`, r.Devices)
	dst = appendStrings(dst, `,"groups":`, r.Groups)
	if r.Global {
		dst = append(dst, `,"global":true`...)
	}
	dst = appendString(dst, `,"op":`, string(r.Op))
	dst = appendString(dst, `,"key":`, r.Key)
	if len(r.Data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, jsontext.Trim(r.Data)...)
	}
	dst = appendString(dst, `,"ttl":`, r.TTL)
	dst = appendStrings(dst, `,"platforms":`, r.Platforms)
	dst = appendString(dst, `,"min_app_version":`, r.MinAppVersion)
	dst = appendString(dst, `,"max_app_version":`, r.MaxAppVersion)
	dst = appendString(dst, `,"idempotency_key":`, r.IdempotencyKey)
	return append(dst, '}')
}

func appendString(dst []byte, name, s string) []byte {
	if s == "" {
		return dst
	}
	return jsontext.AppendString(append(dst, name...), s)
}

func appendStrings(dst []byte, name string, ss []string) []byte {
	if len(ss) == 0 {
		return dst
	}
	dst = append(dst, name...)
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsontext.AppendString(dst, s)
	}
	return append(dst, ']')
}

// BatchRequest is the body of POST /v1/publish/batch.
type BatchRequest struct {
	Publishes []PublishRequest `json:"publishes"`
}

// PublishedEntry is the outcome of a publish in one channel.
type PublishedEntry struct {
	Channel   string `json:"channel"`
	Seq       uint64 `json:"seq"` // 0 for a biz that is not persistent
	Epoch     string `json:"epoch"`
	Duplicate bool   `json:"duplicate"` // the idempotency key was seen; Seq is the original's
	Ephemeral bool   `json:"ephemeral,omitempty"`
	// Error is a failure in this channel alone, such as a conflict.
	Error *syncpoint.Error `json:"error,omitempty"`
}

// PublishResponse is the answer to POST /v1/publish: one entry per
// distinct target.
type PublishResponse struct {
	Entries []PublishedEntry `json:"entries"`
}

// Err joins the errors of the channels that failed; nil when none did.
func (r *PublishResponse) Err() error {
	var errs []error
	for _, e := range r.Entries {
		if e.Error != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %s", e.Channel, e.Error.Code, e.Error.Message))
		}
	}
	return errors.Join(errs...)
}

// BatchResult is one item's result in a batch: its entries, or the error
// that refused the item.
type BatchResult struct {
	Entries []PublishedEntry `json:"entries,omitempty"`
	Error   *syncpoint.Error `json:"error,omitempty"`
}

// BatchResponse is the answer to POST /v1/publish/batch, one result per
// item, in order.
type BatchResponse struct {
	Results []BatchResult `json:"results"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error syncpoint.Error `json:"error"`
}

// StatusError is an answer whose status is not 2xx. Code and Message are
// the server's when the body has the API's error shape; otherwise Body
// holds the start of what came.
type StatusError struct {
	Status  int
	Code    syncpoint.ErrorCode
	Message string
	Body    []byte
}

// Error says the status and the server's message.
func (e *StatusError) Error() string {
	if e.Code != "" {
		return "HTTP " + strconv.Itoa(e.Status) + " " + string(e.Code) + ": " + e.Message
	}
	return "HTTP " + strconv.Itoa(e.Status) + ": " + string(bytes.TrimSpace(e.Body))
}

// Client sends requests to one server with its API key. It is safe for
// concurrent use.
type Client struct {
	// BaseURL is the server's URL, such as http://127.0.0.1:7420.
	BaseURL string
	APIKey  string
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// MaxResponseBytes bounds one answer; 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// Do sends body (nil for none) to path with the API key and returns the
// body of a 2xx answer. Any other answer is a *StatusError.
func (c *Client) Do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	limit := c.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return out, nil
	}
	return nil, AnswerError(resp.StatusCode, out)
}

// AnswerError turns a non-2xx answer's status and body into a
// *StatusError, with the server's code and message when the body has the
// API's error shape.
func AnswerError(status int, body []byte) *StatusError {
	se := &StatusError{Status: status}
	var eb ErrorResponse
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		se.Code, se.Message = eb.Error.Code, eb.Error.Message
	} else {
		se.Body = body[:min(len(body), 512)]
	}
	return se
}

// Call is Do with in sent as JSON (nil for no body) and a 2xx answer
// decoded into out (nil to drop it).
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	b, err := c.Do(ctx, method, path, body)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the answer is not the JSON expected: %w", err)
	}
	return nil
}

// Publish sends one publish. Channels that failed alone are in the
// answer's entries (see PublishResponse.Err), not in the error.
func (c *Client) Publish(ctx context.Context, r *PublishRequest) (*PublishResponse, error) {
	return c.PublishJSON(ctx, r.AppendJSON(nil))
}

// PublishJSON sends a body that is already a PublishRequest in JSON, so a
// caller that publishes in a loop can reuse its buffer.
func (c *Client) PublishJSON(ctx context.Context, body []byte) (*PublishResponse, error) {
	b, err := c.Do(ctx, http.MethodPost, "/v1/publish", body)
	if err != nil {
		return nil, err
	}
	var resp PublishResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("the answer is not the JSON expected: %w", err)
	}
	return &resp, nil
}

// PublishBatch sends the publishes in one request. Items that failed alone
// have their error in their result; err is a failure of the whole request.
func (c *Client) PublishBatch(ctx context.Context, rs []PublishRequest) (*BatchResponse, error) {
	return c.PublishBatchJSON(ctx, AppendBatchJSON(nil, rs), len(rs))
}

// AppendBatchJSON appends the body of a batch of rs.
func AppendBatchJSON(dst []byte, rs []PublishRequest) []byte {
	dst = append(dst, `{"publishes":[`...)
	for i := range rs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = rs[i].AppendJSON(dst)
	}
	return append(dst, "]}"...)
}

// PublishBatchJSON sends a batch body of n items that is already JSON; an
// answer without n results is an error.
func (c *Client) PublishBatchJSON(ctx context.Context, body []byte, n int) (*BatchResponse, error) {
	b, err := c.Do(ctx, http.MethodPost, "/v1/publish/batch", body)
	if err != nil {
		return nil, err
	}
	var resp BatchResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("the answer is not the JSON expected: %w", err)
	}
	if len(resp.Results) != n {
		return nil, fmt.Errorf("%d results for %d publishes", len(resp.Results), n)
	}
	return &resp, nil
}
