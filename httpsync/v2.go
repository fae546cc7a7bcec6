package httpsync

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// The /v2 routes are the queue sessions in the wire shapes of the CRM Sync
// API, so that a client written for that API works with only its base URL
// and token changed. They share the /v1 implementation; only the bodies
// differ. Bodies are read leniently (unknown members are ignored), since
// such clients were written against another server.

// v2Envelope is a /v2 request body: everything is wrapped in "data".
type v2Envelope[T any] struct {
	Data T `json:"data"`
}

// V2StartResponse is the 201 answer of POST /v2/sync/start.
type V2StartResponse struct {
	Data struct {
		ID     string    `json:"id"`
		Queues []V2Queue `json:"queues"`
	} `json:"data"`
	Meta V2Meta `json:"meta"`
}

// V2Queue is a session's queue in the /v2 shape.
type V2Queue struct {
	Data struct {
		Name       string `json:"name"`
		Pages      uint64 `json:"pages"`
		TotalCount uint64 `json:"total_count"`
	} `json:"data"`
	Meta V2Meta `json:"meta"`
}

// V2Meta names what a /v2 object is.
type V2Meta struct {
	Type string `json:"type"`
}

// V2Error is one error of a /v2 error answer.
type V2Error struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details string `json:"details"`
	} `json:"error"`
}

// V2ErrorResponse is the body of every /v2 error answer.
type V2ErrorResponse struct {
	Errors []V2Error `json:"errors"`
	Meta   struct {
		Type   string `json:"type"`
		Logref string `json:"logref"`
	} `json:"meta"`
}

// decodeLenient decodes a /v2 body, which may be empty, ignoring unknown
// members.
func decodeLenient(body []byte, v any) error {
	if len(jsontext.Trim(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return syncpoint.Errorf(syncpoint.CodeInvalid, `the body does not read as {"data": {...}}: %s`, clip(err.Error()))
	}
	return nil
}

func (h *Handler) handleV2Start(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	var req v2Envelope[StartRequest]
	if err := decodeLenient(body, &req); err != nil {
		return err
	}
	out, err := h.startSession(r.Context(), c, req.Data.Bizzes, req.Data.Bizzes == nil)
	if err != nil {
		return err
	}
	if out.Session == nil {
		writeEmpty(w, http.StatusNoContent)
		return nil
	}
	var resp V2StartResponse
	resp.Data.ID = out.Session.ID
	q := V2Queue{Meta: V2Meta{Type: "sync_queue"}}
	q.Data.Name, q.Data.Pages, q.Data.TotalCount = queueName, pagesOf(out.Total), out.Total
	resp.Data.Queues = []V2Queue{q}
	resp.Meta.Type = "sync_session"
	return writeJSON(w, http.StatusCreated, resp)
}

func (h *Handler) handleV2Queue(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	if q := r.PathValue("queue"); q != queueName {
		return syncpoint.Errorf(syncpoint.CodeNotFound, "a session has one queue, %q; there is no queue %q", queueName, clip(q))
	}
	limit, err := limitOf(r)
	if err != nil {
		return err
	}
	p, err := h.queuePage(r.Context(), c, r.PathValue("id"), limit)
	if err != nil {
		return err
	}
	if len(p.Items) == 0 {
		writeEmpty(w, http.StatusNoContent)
		return nil
	}
	b := append(p.appendItems([]byte(`{"items":`), false), `,"meta":{"type":"collection","count":`...)
	b = strconv.AppendInt(b, int64(len(p.Items)), 10)
	b = append(b, `,"count_left":`...)
	b = strconv.AppendUint(b, p.Left, 10)
	writeBody(w, http.StatusOK, append(b, "}}\n"...))
	return nil
}

func (h *Handler) handleV2Ack(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	var req v2Envelope[AckRequest]
	if err := decodeLenient(body, &req); err != nil {
		return err
	}
	if req.Data.AckKeys == nil {
		return syncpoint.Errorf(syncpoint.CodeInvalid, `data.ack_keys is required: {"data": {"ack_keys": [...]}}`)
	}
	if err := h.ack(r.Context(), c, req.Data.AckKeys); err != nil {
		return err
	}
	writeEmpty(w, http.StatusAccepted)
	return nil
}

// writeV2Error answers an error in the /v2 shape, with the status of the
// one table. The logref names the answer in the server's log.
func (h *Handler) writeV2Error(w http.ResponseWriter, r *http.Request, status int, e syncpoint.Error) {
	var resp V2ErrorResponse
	var one V2Error
	one.Error.Code, one.Error.Message, one.Error.Details = string(e.Code), e.Message, e.Message
	resp.Errors = []V2Error{one}
	resp.Meta.Type = "errors"
	id, err := newSessionID()
	if err != nil {
		id = "-"
	}
	resp.Meta.Logref = id
	h.log.Info("httpsync: v2 error", slog.String("logref", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.String("code", string(e.Code)), slog.String("message", e.Message))
	noStore(w)
	if err := writeJSON(w, status, resp); err != nil {
		writeBody(w, http.StatusInternalServerError, []byte(`{"errors":[{"error":{"code":"internal","message":"internal error","details":""}}],"meta":{"type":"errors","logref":"-"}}`+"\n"))
	}
}

// V2QueuePage is the 200 answer of GET /v2/sync/{id}/queues/main, written
// by hand like QueuePage.
type V2QueuePage struct {
	Items []V2QueueItem `json:"items"`
	Meta  V2PageMeta    `json:"meta"`
}

// V2QueueItem is a queue item without the channel, which the CRM Sync API
// does not have.
type V2QueueItem struct {
	Data json.RawMessage `json:"data"`
	Meta V2ItemMeta      `json:"meta"`
}

// V2ItemMeta is ItemMeta without the channel.
type V2ItemMeta struct {
	Type string   `json:"type"`
	Sync ItemSync `json:"sync"`
}

// V2PageMeta is a /v2 page's meta.
type V2PageMeta struct {
	Type      string `json:"type"` // collection
	Count     int    `json:"count"`
	CountLeft uint64 `json:"count_left"`
}
