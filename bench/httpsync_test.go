package bench

import (
	"strings"
	"testing"
)

func TestHTTPSync(t *testing.T) {
	target := MustRunServer(t)
	rep, err := HTTPSync(t.Context(), HTTPSyncConfig{Target: target, Devices: 3, Backlog: 700, Page: 200})
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, rep.Errors)
	if rep.Published != 2100 || rep.Queue == nil || rep.OneShot == nil {
		t.Fatalf("published %d; queue %+v, one-shot %+v", rep.Published, rep.Queue, rep.OneShot)
	}
	for _, d := range []*HTTPSyncDrain{rep.Queue, rep.OneShot} {
		if d.Delivery.Expected != 2100 || d.Delivery.Received != 2100 || d.Requests == 0 {
			t.Fatalf("drain %+v", d)
		}
	}
	var b strings.Builder
	rep.WriteText(&b)
	for _, want := range []string{"queue delivery", "one-shot cpu", "per item"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// A device the server refuses is an error of the run, not a silent loss.
func TestHTTPSyncCountsRefusals(t *testing.T) {
	target := MustRunServer(t)
	target.TokenSecret = "not-the-server-secret-0123456789"
	rep, err := HTTPSync(t.Context(), HTTPSyncConfig{Target: target, Backlog: 10, Mode: HTTPSyncQueue})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failures() == 0 || rep.Queue.Delivery.Lost != 10 {
		t.Fatalf("failures %d, delivery %+v; want the refusal and 10 lost", rep.Failures(), rep.Queue.Delivery)
	}
}
