// Package natstest gives tests a real NATS server with JetStream: the one
// IDEM_NATS_URL names, or else a nats-server started from PATH on a free
// loopback port, with its JetStream store in a temporary directory, for
// the test binary's lifetime. Without either, the tests are skipped —
// unless IDEM_REQUIRE_NATS is set (as CI does), and then they fail. Each
// test names streams of its own (Name).
package natstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The environment variables natstest reads.
const (
	URLEnv     = "IDEM_NATS_URL"
	RequireEnv = "IDEM_REQUIRE_NATS"
)

var (
	once    sync.Once
	url     string
	server  *exec.Cmd
	tempDir string
	initErr error
)

// Main runs a package's tests (call it from TestMain) and stops the
// server it started. Without a server, it runs none and says so in a way
// that go test shows even without -v: its summary line ends in
// "[no tests to run]".
func Main(m *testing.M, pkg string) {
	once.Do(func() { url, initErr = find() })
	if initErr != nil && os.Getenv(RequireEnv) == "" {
		fmt.Printf("%s: no NATS server: %v; install nats-server or set %s to run these tests\n", pkg, initErr, URLEnv)
		fmt.Println("testing: warning: no tests to run")
		os.Exit(0)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// URL returns the server's URL for t (failing t without one).
func URL(t testing.TB) string {
	t.Helper()
	once.Do(func() { url, initErr = find() })
	if initErr != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("nats required (%s): %v", RequireEnv, initErr)
		}
		t.Skipf("no nats: %v (set %s or install nats-server)", initErr, URLEnv)
	}
	return url
}

// Conn returns a connection to the server, closed when t ends.
func Conn(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(URL(t), opts...)
	if err != nil {
		t.Fatalf("nats at %s: %v", URL(t), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

var seq atomic.Int64

// Name returns a stream (or consumer) name of t's own, unique on the
// server across test runs.
func Name(t testing.TB) string {
	t.Helper()
	base := strings.NewReplacer("/", "_", " ", "_", ".", "_", "*", "_", ">", "_").Replace(t.Name())
	return fmt.Sprintf("T%d_%d_%s", os.Getpid(), seq.Add(1), base)
}

func stop() {
	if server != nil {
		_ = server.Process.Kill()
		_ = server.Wait()
	}
	if tempDir != "" {
		_ = os.RemoveAll(tempDir)
	}
}

func find() (string, error) {
	if u := os.Getenv(URLEnv); u != "" {
		return u, ping(u)
	}
	path, err := exec.LookPath("nats-server")
	if err != nil {
		return "", fmt.Errorf("%s is not set and %w", URLEnv, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	if tempDir, err = os.MkdirTemp("", "idem-natstest-"); err != nil {
		return "", err
	}
	cmd := exec.Command(path, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", filepath.Join(tempDir, "js"))
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	server = cmd
	u := fmt.Sprintf("nats://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(u)
		if err == nil {
			return u, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("nats-server on %s: %w", u, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping checks that the server at u answers and has JetStream.
func ping(u string) error {
	nc, err := nats.Connect(u, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}
