package records

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/syncpoint/syncpoint"
)

// The headers that sign a webhook request.
const (
	HeaderTimestamp = "X-Syncpoint-Timestamp"
	HeaderSignature = "X-Syncpoint-Signature"
)

// maxWebhookResponse bounds what is read of a webhook's answer.
const maxWebhookResponse = 1 << 20

// Sign returns the X-Syncpoint-Signature value for a body sent at unix
// time ts: "sha256=" and the hex HMAC-SHA256 of "<ts>.<body>" keyed by
// secret. Receivers compute the same and compare in constant time.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// defaultHTTPClient follows no redirects: a webhook answers where it is
// configured, and a redirect counts as a failure.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: time.Minute, // a backstop; each call has its own deadline
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: time.Minute,
			ForceAttemptHTTP2:     true,
		},
	}
}

// errWebhook is a webhook call that did not get a usable answer.
var errWebhook = errors.New("webhook failed")

// post sends body to url, signed, within the webhook's timeout, and
// returns the status and the (bounded) answer. A transport error or
// timeout is errWebhook.
func (s *Service) post(ctx context.Context, hook *syncpoint.Webhook, url string, body []byte) (int, []byte, error) {
	timeout := time.Duration(hook.Timeout)
	if timeout <= 0 {
		timeout = syncpoint.DefaultWebhookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", errWebhook, err)
	}
	ts := s.clock.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "syncpoint")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(hook.Secret, ts, body))
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", errWebhook, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookResponse))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: read answer: %v", errWebhook, err)
	}
	return resp.StatusCode, answer, nil
}

// validateRequest is the body POSTed to a biz's ValidateURL.
type validateRequest struct {
	Biz      string           `json:"biz"`
	Channel  string           `json:"channel"`
	DeviceID string           `json:"device_id"`
	UserID   string           `json:"user_id"`
	WriteID  string           `json:"write_id"`
	Changes  []proposedChange `json:"changes"`
}

// proposedChange is one change as the validation webhook sees it: Data is
// the whole record as it would be saved (after a merge), Current the
// record's newest entry, if any.
type proposedChange struct {
	Op      string          `json:"op"` // create, update or delete
	ID      string          `json:"id"`
	BaseSeq uint64          `json:"base_seq,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Current *entryJSON      `json:"current,omitempty"`
}

// validateAnswer is the body of a 422 answer.
type validateAnswer struct {
	Errors []struct {
		ID      string `json:"id"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// entryJSON is a stored entry in webhook bodies, in the device protocol's
// JSON form (times in unix milliseconds).
type entryJSON struct {
	Channel   string          `json:"channel"`
	Seq       uint64          `json:"seq"`
	Op        string          `json:"op"`
	Key       string          `json:"key,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	CreatedAt int64           `json:"created_at,omitempty"`
	ExpiresAt int64           `json:"expires_at,omitempty"`
	Origin    string          `json:"origin,omitempty"`
}

func toEntryJSON(e *syncpoint.Entry) *entryJSON {
	if e == nil {
		return nil
	}
	j := &entryJSON{Channel: e.Channel.String(), Seq: e.Seq, Op: string(e.Op), Key: e.Key, Data: e.Data, Origin: e.Origin}
	if !e.CreatedAt.IsZero() {
		j.CreatedAt = e.CreatedAt.UnixMilli()
	}
	if !e.ExpiresAt.IsZero() {
		j.ExpiresAt = e.ExpiresAt.UnixMilli()
	}
	return j
}

// fieldError is a webhook's refusal of one record.
type fieldError struct{ field, message string }

// validate asks the biz's webhook about the changes to one channel. It
// returns the refused records by id; err means no usable answer, and the
// whole write must fail as unavailable.
func (s *Service) validate(ctx context.Context, biz *syncpoint.Biz, body *validateRequest) (map[string][]fieldError, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("validate: encode: %w", err)
	}
	status, answer, err := s.post(ctx, biz.Webhook, biz.Webhook.ValidateURL, b)
	switch {
	case err != nil:
		s.metrics.webhook("validate", "failed")
		return nil, fmt.Errorf("validate: %w", err)
	case status >= 200 && status < 300:
		s.metrics.webhook("validate", "accepted")
		return nil, nil
	case status != http.StatusUnprocessableEntity:
		s.metrics.webhook("validate", "failed")
		return nil, fmt.Errorf("validate: %w: status %d", errWebhook, status)
	}
	s.metrics.webhook("validate", "rejected")
	refused := make(map[string][]fieldError)
	var a validateAnswer
	if json.Unmarshal(answer, &a) != nil || len(a.Errors) == 0 {
		// A refusal that says nothing usable refuses every change.
		for _, c := range body.Changes {
			refused[c.ID] = append(refused[c.ID], fieldError{message: "rejected by the business webhook"})
		}
		return refused, nil
	}
	for _, e := range a.Errors {
		msg := e.Message
		if msg == "" {
			msg = "rejected by the business webhook"
		}
		refused[e.ID] = append(refused[e.ID], fieldError{field: clip(e.Field, maxFieldLen), message: clip(msg, 1024)})
	}
	return refused, nil
}

// clip cuts s to at most n bytes of valid UTF-8, so a webhook cannot bloat
// a result or break its encoding.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}
