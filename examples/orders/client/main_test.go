package main

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startOrders builds and starts the orders service, and returns its URL.
func startOrders(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "orders")
	build := exec.Command("go", "build", "-o", bin, "..")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-dir", t.TempDir())
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := regexp.MustCompile(`orders: listening"? addr=(\S+)`)
	lines := bufio.NewScanner(stderr)
	deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	for lines.Scan() {
		if m := addr.FindStringSubmatch(lines.Text()); m != nil {
			go func() {
				for lines.Scan() {
				}
			}()
			return "http://" + m[1]
		}
	}
	t.Fatal("the orders service did not start")
	return ""
}

// TestEachOrderOnceOverAFlakyConnection: with half the answers lost after
// the service acted, each order is made once; retried with a new key per
// attempt, orders are made twice and the client says so.
func TestEachOrderOnceOverAFlakyConnection(t *testing.T) {
	url := startOrders(t)
	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"-url", url, "-n", "30", "-lose", "0.5"}, &out))
	assert.Contains(t, out.String(), "replayed (the first answer was lost)")
	assert.Contains(t, out.String(), "orders the service holds for these 30 requests: one each")
	assert.NotContains(t, out.String(), "lost answers: 0;")

	out.Reset()
	err := run(context.Background(), []string{"-url", url, "-n", "30", "-lose", "0.5", "-new-key-per-attempt"}, &out)
	assert.ErrorContains(t, err, "duplicate orders")
	assert.Contains(t, out.String(), "requests made more than one order")
}
