package bench

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/syncpoint/syncpoint/apiclient"
)

// An entry's data carries a stamp: when it was published (nanoseconds since
// the run's origin) and its number in the run, padded to the entry size:
//
//	{"t":1234567,"k":42,"p":"xxxx"}
const stampPrefix = `{"t":`

// appendStamp appends the data of entry k published at t, padded with "p"
// to size bytes when size is larger than the stamp itself.
func appendStamp(dst []byte, t int64, k uint64, size int) []byte {
	start := len(dst)
	dst = append(dst, stampPrefix...)
	dst = strconv.AppendInt(dst, t, 10)
	dst = append(dst, `,"k":`...)
	dst = strconv.AppendUint(dst, k, 10)
	const padOverhead = len(`,"p":""}`)
	if pad := size - (len(dst) - start) - padOverhead; pad > 0 {
		dst = append(dst, `,"p":"`...)
		for range pad {
			dst = append(dst, 'x')
		}
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// parseStamp reads a stamp back from data. The fast path reads the exact
// form appendStamp writes; anything else is decoded as JSON, in case the
// server rewrote the text.
func parseStamp(data []byte) (t int64, k uint64, ok bool) {
	if rest, found := bytes.CutPrefix(data, []byte(stampPrefix)); found {
		tv, n := leadingInt(rest)
		if n > 0 {
			if rest, found = bytes.CutPrefix(rest[n:], []byte(`,"k":`)); found {
				kv, m := leadingInt(rest)
				if m > 0 && kv >= 0 && m < len(rest) && (rest[m] == ',' || rest[m] == '}') {
					return tv, uint64(kv), true
				}
			}
		}
	}
	var v struct {
		T *int64  `json:"t"`
		K *uint64 `json:"k"`
	}
	if json.Unmarshal(data, &v) != nil || v.T == nil || v.K == nil {
		return 0, 0, false
	}
	return *v.T, *v.K, true
}

// leadingInt parses the decimal integer at the start of b (an optional
// minus, then up to 18 digits) and returns it with the bytes it used, or
// n 0 when there is none.
func leadingInt(b []byte) (v int64, n int) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, n = true, 1
	}
	digits := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		if digits == 18 {
			return 0, 0 // leave bigger numbers to encoding/json
		}
		v = v*10 + int64(b[n]-'0')
		n++
		digits++
	}
	if digits == 0 {
		return 0, 0
	}
	if neg {
		v = -v
	}
	return v, n
}

// stamped builds the bodies of publishes whose data are stamps, reusing its
// buffers from one request to the next; one per publishing goroutine.
type stamped struct {
	reqs   []apiclient.PublishRequest
	stamps []byte
	body   []byte
}

// add queues req with the stamp of entry k published at t as its data.
func (s *stamped) add(req apiclient.PublishRequest, t int64, k uint64, size int) {
	from := len(s.stamps)
	s.stamps = appendStamp(s.stamps, t, k, size)
	req.Data = s.stamps[from:len(s.stamps):len(s.stamps)]
	s.reqs = append(s.reqs, req)
}

// one returns the body of POST /v1/publish for the one queued publish, and
// empties the queue; the body is valid until the next call.
func (s *stamped) one() []byte {
	s.body = s.reqs[0].AppendJSON(s.body[:0])
	s.reset()
	return s.body
}

// batch returns the body of POST /v1/publish/batch for every queued
// publish, and empties the queue; the body is valid until the next call.
func (s *stamped) batch() []byte {
	s.body = apiclient.AppendBatchJSON(s.body[:0], s.reqs)
	s.reset()
	return s.body
}

func (s *stamped) reset() {
	clear(s.reqs) // drop the references into stamps
	s.reqs, s.stamps = s.reqs[:0], s.stamps[:0]
}
