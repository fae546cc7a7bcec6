package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// An app that embeds the SDK must not link the server: its session core,
// token signing, metrics or transports.
func TestSDKDoesNotLinkTheServer(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"github.com/syncpoint/syncpoint/hub",
		"github.com/syncpoint/syncpoint/auth",
		"github.com/syncpoint/syncpoint/tcp",
		"github.com/syncpoint/syncpoint/ws",
		"github.com/golang-jwt/",
		"github.com/prometheus/",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f) {
				t.Errorf("the SDK links %s", dep)
			}
		}
	}
}
