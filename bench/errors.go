package bench

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// maxSamples is how many error messages a report keeps, to show what went
// wrong without flooding it.
const maxSamples = 8

// Errors counts what failed during a run, by kind. Every figure in a
// report covers only the work that succeeded.
type Errors struct {
	Connect  int64 `json:"connect"`  // dial, hello or welcome failed
	Publish  int64 `json:"publish"`  // publish requests, or entries of them, that failed
	Protocol int64 `json:"protocol"` // error frames, unexpected frames or entries, bad data
	Closed   int64 `json:"closed"`   // connections that ended before the run did
	Write    int64 `json:"write"`    // record uploads refused, failed or unanswered
	// Samples are the first few error messages.
	Samples []string `json:"samples,omitempty"`
}

// Total is the number of errors of every kind.
func (e Errors) Total() int64 { return e.Connect + e.Publish + e.Protocol + e.Closed + e.Write }

// String lists the non-zero counts, or "none".
func (e Errors) String() string {
	if e.Total() == 0 {
		return "none"
	}
	s := ""
	add := func(n int64, what string) {
		if n == 0 {
			return
		}
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", n, what)
	}
	add(e.Connect, "connect")
	add(e.Publish, "publish")
	add(e.Protocol, "protocol")
	add(e.Closed, "unexpected close")
	add(e.Write, "write")
	return s
}

// errCounter is Errors shared by the goroutines of a run.
type errCounter struct {
	connect, publish, protocol, closed, write atomic.Int64

	mu      sync.Mutex
	samples []string
}

func newErrCounter() *errCounter { return &errCounter{} }

type errKind int

const (
	errConnect errKind = iota
	errPublish
	errProtocol
	errClosed
	errWrite
)

// add counts n errors of kind; err, when set, may become a sample.
func (c *errCounter) add(kind errKind, n int64, err error) {
	switch kind {
	case errConnect:
		c.connect.Add(n)
	case errPublish:
		c.publish.Add(n)
	case errProtocol:
		c.protocol.Add(n)
	case errClosed:
		c.closed.Add(n)
	case errWrite:
		c.write.Add(n)
	}
	if err == nil {
		return
	}
	c.mu.Lock()
	if len(c.samples) < maxSamples {
		c.samples = append(c.samples, err.Error())
	}
	c.mu.Unlock()
}

func (c *errCounter) total() int64 {
	return c.connect.Load() + c.publish.Load() + c.protocol.Load() + c.closed.Load() + c.write.Load()
}

func (c *errCounter) snapshot() Errors {
	c.mu.Lock()
	samples := append([]string(nil), c.samples...)
	c.mu.Unlock()
	return Errors{
		Connect:  c.connect.Load(),
		Publish:  c.publish.Load(),
		Protocol: c.protocol.Load(),
		Closed:   c.closed.Load(),
		Write:    c.write.Load(),
		Samples:  samples,
	}
}
