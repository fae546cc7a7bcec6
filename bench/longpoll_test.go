package bench

import (
	"strings"
	"testing"
	"time"
)

func TestLongPoll(t *testing.T) {
	target := MustRunServer(t)
	rep, err := LongPoll(t.Context(), LongPollConfig{Target: target, Paced: Paced{Devices: 10, Rate: 400, Duration: 500 * time.Millisecond, Publishers: 8, Size: 300}, Wait: 5 * time.Second, Compare: true})
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, rep.Errors)
	if rep.Connected != 10 || rep.Published != 200 {
		t.Fatalf("connected %d, published %d; want 10 and 200", rep.Connected, rep.Published)
	}
	d := rep.Delivery
	if d.Expected != 200 || d.Received != 200 || d.Unexpected != 0 || d.Lost != 0 || d.Duplicated != 0 || d.Reordered != 0 || rep.Delivered != 200 {
		t.Fatalf("delivery %+v, delivered %d; want all 200", d, rep.Delivered)
	}
	// Half of the channels are the long-polls', half the sockets'.
	if rep.Latency.Count != 100 || rep.SocketLatency == nil || rep.SocketLatency.Count != 100 {
		t.Fatalf("latency samples %d on long-polls, %+v on sockets; want 100 each", rep.Latency.Count, rep.SocketLatency)
	}
	var b strings.Builder
	rep.WriteText(&b)
	for _, want := range []string{"ws/json latency", "per delivered entry"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, b.String())
		}
	}
}
