// Package redistest gives tests a real Redis server: the one named by
// IDEM_REDIS_ADDR, or else a redis-server started from PATH on a free
// loopback port for the test binary's lifetime. Without either, tests
// that need Redis are skipped — unless IDEM_REQUIRE_REDIS is set (as CI
// does), and then they fail.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	once    sync.Once
	addr    string
	server  *exec.Cmd
	initErr error
)

// Addr returns the address of a Redis server for t, starting one if
// needed.
func Addr(t testing.TB) string {
	t.Helper()
	once.Do(func() { addr, initErr = find() })
	if initErr != nil {
		if os.Getenv("IDEM_REQUIRE_REDIS") != "" {
			t.Fatalf("redis required (IDEM_REQUIRE_REDIS): %v", initErr)
		}
		t.Skipf("no redis: %v (set IDEM_REDIS_ADDR or install redis-server)", initErr)
	}
	return addr
}

// Main runs a package's tests (call it from TestMain) and stops the
// server it started. Without a server, it runs none and says so in a way
// that go test shows even without -v: its summary line ends in
// "[no tests to run]".
func Main(m *testing.M, pkg string) {
	once.Do(func() { addr, initErr = find() })
	if initErr != nil && os.Getenv("IDEM_REQUIRE_REDIS") == "" {
		fmt.Printf("%s: no Redis server: %v; install redis-server or set IDEM_REDIS_ADDR to run these tests\n", pkg, initErr)
		fmt.Println("testing: warning: no tests to run")
		os.Exit(0)
	}
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Client returns a client of the test server, closed when t ends.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: Addr(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Prefix returns a key prefix of t's own, whose keys are deleted when t
// ends, so that tests sharing the server never see each other's keys.
func Prefix(t testing.TB, rdb *redis.Client) string {
	t.Helper()
	prefix := fmt.Sprintf("test:%d:%d:", os.Getpid(), seq.Add(1))
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return prefix
}

var seq atomic.Int64

// Stop stops a server started by Addr; TestMain calls it after m.Run
// (Main does).
func Stop() {
	if server != nil {
		_ = server.Process.Kill()
		_ = server.Wait()
	}
}

func find() (string, error) {
	if a := os.Getenv("IDEM_REDIS_ADDR"); a != "" {
		return a, ping(a)
	}
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("IDEM_REDIS_ADDR is not set and %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(path, "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--logfile", "")
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	server = cmd
	a := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(a)
		if err == nil {
			return a, nil
		}
		if time.Now().After(deadline) {
			Stop()
			return "", fmt.Errorf("redis-server on %s: %w", a, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ping(a string) error {
	rdb := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}
