// Package pgtest gives tests a real PostgreSQL server: the one that
// IDEM_POSTGRES_URL names. Without it, tests that need one are skipped —
// unless IDEM_REQUIRE_POSTGRES is set (as CI does), and then they fail.
// Each test gets a table of its own, dropped when it ends.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// URLEnv and RequireEnv are the environment variables pgtest reads.
const (
	URLEnv     = "IDEM_POSTGRES_URL"
	RequireEnv = "IDEM_REQUIRE_POSTGRES"
)

// Main runs a package's tests (call it from TestMain). Without a server,
// it runs none and says so in a way that go test shows even without -v:
// its summary line ends in "[no tests to run]".
func Main(m *testing.M, pkg string) {
	if os.Getenv(URLEnv) == "" && os.Getenv(RequireEnv) == "" {
		fmt.Printf("%s: no PostgreSQL server: set %s=postgres://… to run these tests\n", pkg, URLEnv)
		fmt.Println("testing: warning: no tests to run")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// URL returns the server's URL for t, or skips (or fails) t without one.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv(URLEnv)
	if url == "" {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("postgres required (%s) but %s is not set", RequireEnv, URLEnv)
		}
		t.Skipf("no postgres: set %s", URLEnv)
	}
	return url
}

// Pool returns a pool on the server, closed when t ends.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, URL(t))
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		t.Fatalf("postgres at %s: %v", os.Getenv(URLEnv), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

var seq atomic.Int64

// Table returns a table name of t's own; the table, its sequence and its
// index are dropped when t ends.
func Table(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	name := fmt.Sprintf("idem_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, seq.Add(1))
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = pool.Exec(ctx, "DROP TABLE IF EXISTS "+name)
		_, _ = pool.Exec(ctx, "DROP SEQUENCE IF EXISTS "+name+"_owner")
	})
	return name
}
