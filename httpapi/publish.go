package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
	"github.com/syncpoint/syncpoint/publish"
)

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) error {
	body, done, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	req, err := decodePublish(body)
	done()
	if err != nil {
		return err
	}
	results, err := s.publisher.Publish(r.Context(), req)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 64+96*len(results))
	buf = appendEntries(buf, results)
	buf = append(buf, '\n')
	writeBody(w, http.StatusOK, buf)
	return nil
}

func (s *Server) handlePublishBatch(w http.ResponseWriter, r *http.Request) error {
	body, done, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	reqs, errs, err := decodeBatch(body)
	done()
	if err != nil {
		return err
	}
	// Only the requests that decoded go to the publisher, in one call.
	valid := make([]publish.Request, 0, len(reqs))
	index := make([]int, 0, len(reqs))
	for i := range reqs {
		if errs[i] == nil {
			valid = append(valid, reqs[i])
			index = append(index, i)
		}
	}
	results := make([][]publish.Result, len(reqs))
	if len(valid) > 0 {
		res, perr, err := s.publisher.PublishBatch(r.Context(), valid)
		if err != nil {
			return err
		}
		for j, i := range index {
			results[i], errs[i] = res[j], perr[j]
		}
	}
	buf := make([]byte, 0, 64+128*len(reqs))
	buf = append(buf, `{"results":[`...)
	for i := range reqs {
		if i > 0 {
			buf = append(buf, ',')
		}
		if errs[i] != nil {
			ce := clientError(errs[i])
			if ce.Code == syncpoint.CodeInternal {
				s.logger.Error("httpapi: internal error in batch item", "index", i, "err", errs[i])
			}
			buf = appendErrorObject(buf, ce)
			continue
		}
		buf = appendEntries(buf, results[i])
	}
	buf = append(buf, "]}\n"...)
	writeBody(w, http.StatusOK, buf)
	return nil
}

// appendEntries writes {"entries":[...]} for one publish. It is written by
// hand because it is the hottest response of the API.
func appendEntries(buf []byte, results []publish.Result) []byte {
	buf = append(buf, `{"entries":[`...)
	for i, res := range results {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"channel":`...)
		buf = jsontext.AppendString(buf, res.Channel.String())
		buf = append(buf, `,"seq":`...)
		buf = strconv.AppendUint(buf, res.Seq, 10)
		buf = append(buf, `,"epoch":`...)
		buf = jsontext.AppendString(buf, res.Epoch)
		buf = append(buf, `,"duplicate":`...)
		buf = strconv.AppendBool(buf, res.Duplicate)
		if res.Ephemeral {
			buf = append(buf, `,"ephemeral":true`...)
		}
		if res.Err != nil {
			ce := clientError(res.Err)
			if errors.Is(res.Err, syncpoint.ErrKeyChanged) {
				ce = syncpoint.Error{Code: syncpoint.CodeConflict, Message: "the key changed since the given seq; it is now at seq " + strconv.FormatUint(res.KeySeq, 10)}
			}
			buf = append(buf, `,"error":`...)
			buf = appendErrorFields(buf, ce)
		}
		buf = append(buf, '}')
	}
	return append(buf, "]}"...)
}

func appendErrorObject(buf []byte, e syncpoint.Error) []byte {
	buf = append(buf, `{"error":`...)
	buf = appendErrorFields(buf, e)
	return append(buf, '}')
}

func appendErrorFields(buf []byte, e syncpoint.Error) []byte {
	buf = append(buf, `{"code":`...)
	buf = jsontext.AppendString(buf, string(e.Code))
	buf = append(buf, `,"message":`...)
	buf = jsontext.AppendString(buf, e.Message)
	if e.Seq != 0 {
		buf = append(buf, `,"seq":`...)
		buf = strconv.AppendUint(buf, e.Seq, 10)
	}
	return append(buf, '}')
}
