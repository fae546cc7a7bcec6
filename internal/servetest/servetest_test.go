package servetest

import (
	"os"
	"strings"
	"testing"
)

func TestReadMemoryOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.Peak < m.RSS {
		t.Fatalf("memory %+v: want 0 < RSS <= peak", m)
	}
}

// A chatty process's log keeps its start and its end, and is bounded.
func TestTailBufferKeepsBothEnds(t *testing.T) {
	var b tailBuffer
	b.Write([]byte("listening on http://127.0.0.1:1\n"))
	line := []byte(strings.Repeat("x", 99) + "\n")
	for range 20000 {
		b.Write(line)
	}
	b.Write([]byte("the last words\n"))
	s := b.String()
	if !strings.HasPrefix(s, "listening on") || !strings.HasSuffix(s, "the last words\n") || !strings.Contains(s, "bytes left out") {
		t.Fatalf("the log lost an end: %d bytes", len(s))
	}
	if len(s) > headBytes+2*tailBytes+100 {
		t.Fatalf("the log holds %d bytes", len(s))
	}
}

func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	p := freePort(t)
	if low > 11000 && p >= low {
		t.Fatalf("port %d is in the ephemeral range from %d", p, low)
	}
}
