package wire

import (
	"fmt"
	"testing"
)

// benchPush is a push as a catching-up device gets it: 256 entries with
// about 100 bytes of data each, over a few channels.
func benchPush() *Frame {
	p := &Push{Entries: make([]Entry, 256)}
	for i := range p.Entries {
		ch := fmt.Sprintf("chat/user:u%d", i%4)
		p.Entries[i] = Entry{
			Channel:   ch,
			Seq:       uint64(100000 + i),
			Op:        "msg",
			Data:      []byte(fmt.Sprintf(`{"id":"01HZX5N%06d","from":"u%d","text":"hello there, this is message %d","n":%d}`, i, i%7, i, i)),
			CreatedAt: ms(1700000000000 + int64(i)),
			Origin:    "api",
		}
	}
	for i := 0; i < 4; i++ {
		p.Positions = append(p.Positions, Position{Channel: fmt.Sprintf("chat/user:u%d", i), Epoch: "01HZX3E1Q2", Seq: uint64(100000 + 252 + i)})
	}
	return &Frame{Push: p}
}

func reportEntries(b *testing.B, n int) {
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkEncodePush(b *testing.B) {
	f := benchPush()
	for _, c := range []Codec{JSON, Proto} {
		b.Run(c.Name(), func(b *testing.B) {
			buf, err := c.Encode(nil, f)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				buf, err = c.Encode(buf[:0], f)
				if err != nil {
					b.Fatal(err)
				}
			}
			reportEntries(b, len(f.Push.Entries))
		})
	}
}

func BenchmarkDecodePush(b *testing.B) {
	f := benchPush()
	for _, c := range []Codec{JSON, Proto} {
		b.Run(c.Name(), func(b *testing.B) {
			buf, err := c.Encode(nil, f)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Decode(buf); err != nil {
					b.Fatal(err)
				}
			}
			reportEntries(b, len(f.Push.Entries))
		})
	}
}

// BenchmarkFrameRoundTrip is a push taken over the TCP framing: encode with
// its length prefix, read back, decode.
func BenchmarkFrameRoundTrip(b *testing.B) {
	f := benchPush()
	var stream loopBuffer
	r := NewReader(&stream, 0)
	var buf []byte
	var err error
	b.ReportAllocs()
	for range b.N {
		buf, err = EncodeFrame(buf[:0], f)
		if err != nil {
			b.Fatal(err)
		}
		stream.b = append(stream.b[:0], buf...)
		stream.off = 0
		p, err := r.Next()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeProto(p); err != nil {
			b.Fatal(err)
		}
	}
	reportEntries(b, len(f.Push.Entries))
}

type loopBuffer struct {
	b   []byte
	off int
}

func (l *loopBuffer) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off += n
	return n, nil
}
