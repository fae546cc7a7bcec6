package httpsync

import (
	"context"
	"net/http"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// handleWrite is POST /v1/write: the socket's write frame as JSON, applied
// through the same record path, answered by its write_result. A write that
// fails as a whole (nothing of it applied) is answered as an error whose
// code says whether to send it again with the same write_id.
func (h *Handler) handleWrite(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	if err := h.bind(r.Context(), c); err != nil {
		return err
	}
	if len(body) == 0 {
		return syncpoint.Errorf(syncpoint.CodeMalformed, `the body is empty; want a write frame, {"write": {"write_id": ..., "changes": [...]}}`)
	}
	f, err := wire.DecodeJSON(body)
	if err != nil {
		return err
	}
	if f.Write == nil {
		return syncpoint.Errorf(syncpoint.CodeInvalid, `the body holds a %s frame; want a write frame, {"write": {...}}`, f.Type())
	}
	res := h.write(r.Context(), c, f.Write)
	if res.Error != nil {
		return res.Error.Unwrap()
	}
	b, err := wire.EncodeJSON(nil, &wire.Frame{WriteResult: res})
	if err != nil {
		return err
	}
	writeBody(w, http.StatusOK, append(b, '\n'))
	return nil
}

// write applies an upload, or refuses it when the server takes none.
func (h *Handler) write(ctx context.Context, c *caller, wr *wire.Write) *wire.WriteResult {
	if h.cfg.Records == nil {
		return &wire.WriteResult{WriteID: wr.WriteID, Error: wire.ErrorFrom(syncpoint.Errorf(syncpoint.CodeForbidden, "this server takes no record uploads"), false)}
	}
	return h.cfg.Records.Write(ctx, c.id, wr)
}
