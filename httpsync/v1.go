package httpsync

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/internal/jsonbody"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// StartRequest is the optional body of POST /v1/sync/start.
type StartRequest struct {
	// Bizzes to sync; absent means every persistent biz the token reads.
	Bizzes []string `json:"bizzes"`
}

// StartResponse is the 201 answer of POST /v1/sync/start.
type StartResponse struct {
	ID       string          `json:"id"`
	Queues   []Queue         `json:"queues"`
	Channels []ChannelStatus `json:"channels"`
}

// Queue describes a session's queue. There is one, named "main".
type Queue struct {
	Name string `json:"name"`
	// Pages is how many pages of the default limit the queue takes at
	// most, TotalCount how many items it holds at most: entries that are
	// not for the device (conditions, expiry) are skipped as the pages go.
	Pages      uint64 `json:"pages"`
	TotalCount uint64 `json:"total_count"`
}

// ChannelStatus is where a channel of the session stands against the
// device's sync point, as a socket welcome says it.
type ChannelStatus struct {
	Channel  string `json:"channel"`
	Status   string `json:"status"` // ok, reset or gap
	Epoch    string `json:"epoch"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	From     uint64 `json:"from"` // the session delivers the entries after this seq
}

// AckRequest is the body of POST /v1/sync/ack.
type AckRequest struct {
	AckKeys []string `json:"ack_keys"`
}

// queueName is the one queue a session has, as in the CRM Sync API.
const queueName = "main"

func statusesOf(st []feed.Status) []ChannelStatus {
	out := make([]ChannelStatus, 0, len(st))
	for _, s := range st {
		out = append(out, ChannelStatus{
			Channel: s.Cursor.Name, Status: string(s.Status), Epoch: s.Info.Epoch,
			FirstSeq: s.Info.FirstSeq, LastSeq: s.Info.LastSeq, From: s.From,
		})
	}
	return out
}

func pagesOf(total uint64) uint64 { return (total + DefaultLimit - 1) / DefaultLimit }

func (h *Handler) handleStart(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	var req StartRequest
	if err := decodeStartBody(body, &req); err != nil {
		return err
	}
	out, err := h.startSession(r.Context(), c, req.Bizzes, req.Bizzes == nil)
	if err != nil {
		return err
	}
	if out.Session == nil {
		writeEmpty(w, http.StatusNoContent)
		return nil
	}
	return writeJSON(w, http.StatusCreated, StartResponse{
		ID:       out.Session.ID,
		Queues:   []Queue{{Name: queueName, Pages: pagesOf(out.Total), TotalCount: out.Total}},
		Channels: statusesOf(out.Statuses),
	})
}

// limitOf reads the limit query parameter of a queue page.
func limitOf(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, syncpoint.Errorf(syncpoint.CodeInvalid, "limit %q: want a whole number from 1 to %d", clip(s), MaxLimit)
	}
	return n, nil
}

func (h *Handler) handleQueue(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	limit, err := limitOf(r)
	if err != nil {
		return err
	}
	p, err := h.queuePage(r.Context(), c, r.PathValue("session"), limit)
	if err != nil {
		return err
	}
	if len(p.Items) == 0 {
		writeEmpty(w, http.StatusNoContent)
		return nil
	}
	b := append(p.appendItems([]byte(`{"items":`), true), `,"count_left":`...)
	b = strconv.AppendUint(b, p.Left, 10)
	writeBody(w, http.StatusOK, append(b, "}\n"...))
	return nil
}

// appendItems appends the page's items as a JSON array, each
// {"data", "meta": {"type", ["channel",] "sync": {"event_type", "ack_key",
// "revision"}}}.
func (p *page) appendItems(b []byte, withChannel bool) []byte {
	seen := make(map[string]bool)
	b = append(b, '[')
	for i := range p.Items {
		q := &p.Items[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"data":`...)
		b = itemData(b, &q.e)
		b = append(b, `,"meta":{"type":`...)
		b = jsontext.AppendString(b, q.c.Channel.Biz)
		if withChannel {
			b = append(b, `,"channel":`...)
			b = jsontext.AppendString(b, q.c.Name)
		}
		b = append(b, `,"sync":{"event_type":"`...)
		b = append(b, eventOf(&q.e, seen)...)
		b = append(b, `","ack_key":"`...)
		b = append(b, p.keys.make(position{Channel: q.c.Channel, Position: syncpoint.Position{Epoch: q.c.Epoch, Seq: q.e.Seq}})...)
		b = append(b, `","revision":`...)
		b = strconv.AppendUint(b, q.e.Seq, 10)
		b = append(b, "}}}"...)
	}
	return append(b, ']')
}

func (h *Handler) handleAck(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	var req AckRequest
	if err := decodeAckBody(body, &req); err != nil {
		return err
	}
	if err := h.ack(r.Context(), c, req.AckKeys); err != nil {
		return err
	}
	writeEmpty(w, http.StatusAccepted)
	return nil
}

// decodeStartBody decodes the optional body of a start.
func decodeStartBody(body []byte, req *StartRequest) error {
	if len(jsontext.Trim(body)) == 0 {
		return nil
	}
	return jsonbody.Decode(body, req)
}

// decodeAckBody decodes the body of an ack, which must list its keys.
func decodeAckBody(body []byte, req *AckRequest) error {
	if err := jsonbody.Decode(body, req); err != nil {
		return err
	}
	if req.AckKeys == nil {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "ack_keys is required: give the ack keys of the items applied")
	}
	return nil
}

// QueuePage is the 200 answer of GET /v1/sync/{session}/queue. It is
// written by hand, for speed; a test holds the answer to this type.
type QueuePage struct {
	Items []QueueItem `json:"items"`
	// CountLeft is at most how many items are left after this page.
	CountLeft uint64 `json:"count_left"`
}

// QueueItem is one item of a queue page.
type QueueItem struct {
	// Data is the record, flat with its "id", for a put; {"id"} for a
	// delete; the message's data for a msg.
	Data json.RawMessage `json:"data"`
	Meta ItemMeta        `json:"meta"`
}

// ItemMeta says what an item is and how to ack it.
type ItemMeta struct {
	Type    string   `json:"type"` // the biz
	Channel string   `json:"channel"`
	Sync    ItemSync `json:"sync"`
}

// ItemSync is an item's sync instructions.
type ItemSync struct {
	EventType string `json:"event_type"` // created, updated, deleted or msg
	AckKey    string `json:"ack_key"`
	Revision  uint64 `json:"revision"` // the entry's seq
}
