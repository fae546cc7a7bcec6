//go:build !linux

package servetest

import "os/exec"

func dieWithParent(cmd *exec.Cmd) {}
