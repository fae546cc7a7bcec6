package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/syncpoint/syncpoint"
)

func frameBytes(payloads ...[]byte) []byte {
	var buf bytes.Buffer
	for _, p := range payloads {
		if err := WriteFrame(&buf, p); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func TestReaderFrames(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 3*initialReadBytes+5) // grows past the first buffer
	payloads := [][]byte{[]byte("a"), big, []byte("bc"), bytes.Repeat([]byte("y"), 1000)}
	stream := frameBytes(payloads...)
	for name, src := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
		"data+eof": iotest.DataErrReader(bytes.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src, 0)
			for i, want := range payloads {
				got, err := r.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("frame %d: got %d bytes, want %d", i, len(got), len(want))
				}
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after the last frame: got %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	for _, tc := range []struct {
		name string
		in   []byte
		max  int
		want error
		code syncpoint.ErrorCode
	}{
		{"empty stream", nil, 0, io.EOF, ""},
		{"partial header", []byte{0, 0}, 0, io.ErrUnexpectedEOF, ""},
		{"header only", hdr(5), 0, io.ErrUnexpectedEOF, ""},
		{"partial body", append(hdr(5), "abc"...), 0, io.ErrUnexpectedEOF, ""},
		{"partial large body", append(hdr(1<<20), "abc"...), 0, io.ErrUnexpectedEOF, ""},
		{"zero length", hdr(0), 0, nil, syncpoint.CodeMalformed},
		{"over the limit", append(hdr(101), make([]byte, 101)...), 100, nil, syncpoint.CodeTooLarge},
		{"over the default limit", hdr(DefaultMaxFrameBytes + 1), 0, nil, syncpoint.CodeTooLarge},
		{"huge", hdr(0xffffffff), 0, nil, syncpoint.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(iotest.OneByteReader(bytes.NewReader(tc.in)), tc.max)
			_, err := r.Next()
			if tc.want != nil && err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.code != "" && codeOf(err) != tc.code {
				t.Fatalf("got %v, want code %s", err, tc.code)
			}
			if tc.code == syncpoint.CodeTooLarge && cap(r.buf) != 0 {
				t.Fatalf("allocated %d bytes for a frame it refused", cap(r.buf))
			}
		})
	}
	// At exactly the limit the frame is fine.
	r := NewReader(bytes.NewReader(frameBytes(make([]byte, 100))), 100)
	if b, err := r.Next(); err != nil || len(b) != 100 {
		t.Fatalf("frame at the limit: %d bytes, %v", len(b), err)
	}
	// Errors of the underlying reader come through.
	boom := errors.New("boom")
	r = NewReader(iotest.ErrReader(boom), 0)
	if _, err := r.Next(); err != boom {
		t.Fatalf("got %v, want boom", err)
	}
}

// TestReaderGrowsWithData checks that a peer declaring a large frame does
// not get that much memory before it sends the bytes.
func TestReaderGrowsWithData(t *testing.T) {
	in := append(binary.BigEndian.AppendUint32(nil, DefaultMaxFrameBytes), "abc"...)
	r := NewReader(bytes.NewReader(in), 0)
	if _, err := r.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v", err)
	}
	if cap(r.buf) > initialReadBytes {
		t.Fatalf("buffered %d bytes for 3 that arrived", cap(r.buf))
	}
}

func TestReaderHoldsNoBufferBetweenFrames(t *testing.T) {
	r := NewReader(bytes.NewReader(frameBytes(make([]byte, 1<<20+1), []byte("a"), make([]byte, pooledFrameBytes))), 0)
	for _, want := range []int{1<<20 + 1, 1, pooledFrameBytes} {
		b, err := r.Next()
		if err != nil || len(b) != want {
			t.Fatalf("read %d bytes, %v; want %d", len(b), err, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
	if r.buf != nil || r.pooled != nil {
		t.Fatal("a buffer is held while the reader waits for a frame")
	}
}

func TestWriteFrame(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got := buf.Bytes(); !bytes.Equal(got, []byte("\x00\x00\x00\x05hello")) {
		t.Fatalf("got %q", got)
	}
	if err := WriteFrame(&buf, nil); codeOf(err) != syncpoint.CodeInvalid {
		t.Fatalf("empty payload: got %v", err)
	}
	w := &failWriter{}
	if err := WriteFrame(w, []byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("got %v", err)
	}
}

type failWriter struct{}

func (*failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// TestFramesOverTCP sends every sample frame across a real socket, half with
// WriteFrame and half with EncodeFrame, and reads them back.
func TestFramesOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	samples := sampleFrames()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		var buf []byte
		for i, s := range samples {
			if i%2 == 0 {
				buf, err = EncodeFrame(buf[:0], s.frame)
				if err == nil {
					_, err = c.Write(buf)
				}
			} else {
				buf, err = EncodeProto(buf[:0], s.frame)
				if err == nil {
					err = WriteFrame(c, buf)
				}
			}
			if err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := NewReader(c, 0)
	for _, s := range samples {
		b, err := r.Next()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		f, err := DecodeProto(b)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !reflect.DeepEqual(f, s.frame) {
			t.Fatalf("%s: frame changed on the way", s.name)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestEncodeFrameKeepsPrefix(t *testing.T) {
	out, err := EncodeFrame([]byte("pre"), &Frame{Ping: &Ping{Nonce: 1}})
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(out[3:]), 0)
	b, err := r.Next()
	if err != nil || string(out[:3]) != "pre" {
		t.Fatal(err)
	}
	if f, err := DecodeProto(b); err != nil || f.Ping.Nonce != 1 {
		t.Fatalf("%+v %v", f, err)
	}
	out, err = EncodeFrame([]byte("pre"), &Frame{})
	if err == nil || string(out) != "pre" {
		t.Fatalf("a failed encode must leave dst as it was: %q %v", out, err)
	}
}
