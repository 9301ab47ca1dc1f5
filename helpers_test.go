package idem

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openTest opens a store for a test and closes it at cleanup. An empty
// opts.Dir (without InMemory) gets a temporary directory.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Dir == "" && !opts.InMemory {
		opts.Dir = t.TempDir()
	}
	st, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// scopeTest opens scope name on st.
func scopeTest(t testing.TB, st *Store, name string, o ScopeOptions) *Scope {
	t.Helper()
	sc, err := st.Scope(name, o)
	require.NoError(t, err)
	return sc
}

// value returns fn for Do that counts its runs and returns v.
func value(runs *int, v string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		*runs++
		return []byte(v), nil
	}
}

// testCtx is a context that ends with the test, or after a minute, so that a
// broken concurrency test fails instead of hanging.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
