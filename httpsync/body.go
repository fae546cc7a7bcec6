package httpsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/syncpoint/syncpoint"
)

// readBody reads the capped request body. An empty body is no error: some
// forms take none.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	// A deadline for the body alone, lifted once it is read, so a client
	// that trickles a body does not hold a handler for as long as it likes.
	// A socket deadline is wall-clock time, whatever the server's clock.
	rc := http.NewResponseController(w)
	timed := rc.SetReadDeadline(time.Now().Add(h.cfg.BodyTimeout)) == nil
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if timed && err == nil {
		rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			return nil, syncpoint.Errorf(syncpoint.CodeTooLarge, "the body is over the limit of %d bytes", mbe.Limit)
		case errors.As(err, &ne) && ne.Timeout():
			w.Header().Set("Connection", "close")
			return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "the body did not arrive within %s", h.cfg.BodyTimeout)
		}
		return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "reading the body failed")
	}
	return buf.Bytes(), nil
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	writeBody(w, status, append(b, '\n'))
	return nil
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// writeEmpty answers with a status that has no body (202, 204): no JSON
// content type either, as clients of the CRM Sync API expect.
func writeEmpty(w http.ResponseWriter, status int) {
	hd := w.Header()
	hd.Del("Content-Type")
	w.WriteHeader(status)
}
