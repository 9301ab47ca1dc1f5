//go:build !linux

package natstest

import "os/exec"

// dieWithParent does nothing here: Stop ends the server.
func dieWithParent(*exec.Cmd) {}
