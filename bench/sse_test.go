package bench

import (
	"strings"
	"testing"
	"time"
)

func TestSSE(t *testing.T) {
	target := MustRunServer(t)
	rep, err := SSE(t.Context(), SSEConfig{Target: target, Paced: Paced{Devices: 10, Rate: 400, Duration: 500 * time.Millisecond, Publishers: 8, Size: 300}, Compare: true})
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, rep.Errors)
	if rep.Connected != 10 || rep.Published != 200 {
		t.Fatalf("connected %d, published %d; want 10 and 200", rep.Connected, rep.Published)
	}
	d := rep.Delivery
	if d.Expected != 200 || d.Received != 200 || d.Unexpected != 0 || rep.Delivered != 200 {
		t.Fatalf("delivery %+v, delivered %d; want all 200", d, rep.Delivered)
	}
	// Half of the channels are the streams', half the sockets'.
	if rep.Latency.Count != 100 || rep.SocketLatency == nil || rep.SocketLatency.Count != 100 {
		t.Fatalf("latency samples %d on streams, %+v on sockets; want 100 each", rep.Latency.Count, rep.SocketLatency)
	}
	var b strings.Builder
	rep.WriteText(&b)
	for _, want := range []string{"ws/json latency", "per delivered entry"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// A stream the server refuses is an error of the run, not a silent loss.
func TestSSECountsRefusedStreams(t *testing.T) {
	target := MustRunServer(t)
	target.TokenSecret = "not-the-server-secret-0123456789"
	rep, err := SSE(t.Context(), SSEConfig{Target: target, Paced: Paced{Devices: 2, Rate: 100, Duration: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors.Connect != 2 || rep.Failures() == 0 || rep.Connected != 0 {
		t.Fatalf("errors %+v, connected %d; want 2 refused streams", rep.Errors, rep.Connected)
	}
}
