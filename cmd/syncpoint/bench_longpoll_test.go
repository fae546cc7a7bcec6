package main

import (
	"strings"
	"testing"
)

func TestBenchLongPollCommand(t *testing.T) {
	url := MustRunServer(t, "k1")
	data := benchDataDir(t, url, "k1", "0123456789abcdef0123")
	e := newTestEnv(nil)
	code := run(t.Context(), e.env, []string{"bench", "longpoll", "--data", data,
		"--devices", "4", "--rate", "100", "--duration", "300ms", "--wait", "5s", "--compare"})
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, e.err, e.out)
	}
	out := e.out.String()
	for _, want := range []string{"longpoll: 4 devices long-polling", "connected        4 of 4", "ws/json latency", "per delivered entry", "lost 0, duplicated 0, reordered 0", "errors           none"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
