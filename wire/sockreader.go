package wire

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// SocketBufferBytes is the size of a SocketReader's buffer.
const SocketBufferBytes = 4096

var socketBuffers = sync.Pool{New: func() any { return new([SocketBufferBytes]byte) }}

// SocketReader is a buffered reader of a socket that holds its buffer only
// while bytes wait in it. An idle device connection spends nearly all its
// life waiting for a frame, and a bufio.Reader keeps its buffer through the
// wait; this one waits for the socket to become readable with no buffer, and
// takes one from a pool only for the read itself. Once the bytes read are
// consumed the buffer goes back.
//
// The wait without a buffer needs the socket's file descriptor
// (syscall.Conn: TCP and Unix sockets). Over anything else, TLS included,
// each read takes a pooled buffer and waits in the connection's own Read,
// which holds it for the wait as a bufio.Reader would.
//
// Deadlines and Close work as on the connection itself: the wait is the
// runtime's network poller's.
type SocketReader struct {
	src  io.Reader
	raw  syscall.RawConn // nil when src has no file descriptor
	buf  *[SocketBufferBytes]byte
	head []byte // bytes read before the reader took over, read first
	r, w int

	idle   bool   // the next read that finds nothing fails with ErrIdle
	parked uint32 // the poller's token while parked, else 0

	// The poller calls fill with the descriptor; fill leaves its result
	// here. A method value made once, so a read allocates nothing.
	fill func(fd uintptr) bool
	err  error
}

// ErrIdle is what a read gives, when asked to (SocketReader.Idle), instead
// of waiting for the socket: nothing has come.
var ErrIdle = errors.New("wire: nothing to read yet")

// NewSocketReader reads nc, after head: bytes already read from nc by
// someone else (an HTTP server's buffered reader at a hijack), which it
// copies.
func NewSocketReader(nc net.Conn, head []byte) *SocketReader {
	r := &SocketReader{src: nc}
	if len(head) > 0 {
		r.head = append([]byte(nil), head...)
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			r.raw = raw
			r.fill = r.readFD
		}
	}
	return r
}

// Read reads into p what is buffered, or else what one read of the socket
// gives; a p of at least a buffer's size is read into directly.
func (r *SocketReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.head) > 0 {
		r.idle = false
		n := copy(p, r.head)
		r.head = r.head[n:]
		if len(r.head) == 0 {
			r.head = nil
		}
		return n, nil
	}
	if r.buf == nil {
		if len(p) >= SocketBufferBytes && !r.idle {
			return r.src.Read(p)
		}
		if err := r.read(); err != nil {
			return 0, err
		}
	}
	r.idle = false
	n := copy(p, r.buf[r.r:r.w])
	r.r += n
	if r.r == r.w {
		socketBuffers.Put(r.buf)
		r.buf, r.r, r.w = nil, 0, 0
	}
	return n, nil
}

// read fills an empty buffer with one read of the socket, or fails.
func (r *SocketReader) read() error {
	if r.raw == nil {
		b := socketBuffers.Get().(*[SocketBufferBytes]byte)
		n, err := r.src.Read(b[:])
		if n <= 0 {
			socketBuffers.Put(b)
			if err == nil {
				err = io.ErrNoProgress
			}
			return err
		}
		r.buf, r.r, r.w = b, 0, n
		return nil // an error with bytes comes again on the next read
	}
	r.err = nil
	if err := r.raw.Read(r.fill); err != nil {
		return err // the wait failed: a deadline, or the socket was closed
	}
	return r.err
}

// readFD is one non-blocking read of the socket into a pooled buffer. It
// reports false, holding no buffer, when the socket has nothing yet: the
// poller then waits and calls it again.
func (r *SocketReader) readFD(fd uintptr) bool {
	b := socketBuffers.Get().(*[SocketBufferBytes]byte)
	for {
		n, err := syscall.Read(int(fd), b[:])
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			socketBuffers.Put(b)
			if r.idle {
				r.idle, r.err = false, ErrIdle
				return true
			}
			return false
		case err != nil:
			socketBuffers.Put(b)
			r.err = &net.OpError{Op: "read", Err: os.NewSyscallError("read", err)}
		case n == 0:
			socketBuffers.Put(b)
			r.err = io.EOF
		default:
			r.buf, r.r, r.w = b, 0, n
		}
		return true
	}
}

// Idle makes the next read that would wait for the socket fail with
// ErrIdle instead, unless bytes come first. A reader at a frame boundary
// calls it to learn that no frame has begun, and may then Park. It has no
// effect without a file descriptor: over TLS a read always waits.
func (r *SocketReader) Idle() { r.idle = r.raw != nil }

// Park waits for the socket with no goroutine: ready runs on a new
// goroutine once the socket is readable, hung up or failed, or not at all
// if Unpark comes first. It reports false, and nothing is registered, when
// the reader cannot park: bytes are buffered, there is no file descriptor
// or no poller. Park and Unpark are not called at the same time as Read,
// nor as each other.
func (r *SocketReader) Park(ready func()) bool {
	p := parkPoller()
	if p == nil || r.raw == nil || r.buf != nil || len(r.head) > 0 {
		return false
	}
	id, ok := p.park(r, ready)
	r.parked = id
	return ok
}

// Unpark cancels a Park whose ready function has not started, and reports
// whether it did: then the caller reads on, or closes the socket.
func (r *SocketReader) Unpark() bool {
	id := r.parked
	if id == 0 {
		return false
	}
	r.parked = 0
	return parkPoller().unpark(r, id)
}
