//go:build !linux

package redistest

import "os/exec"

// dieWithParent does nothing here: Stop ends the server.
func dieWithParent(*exec.Cmd) {}
