package idem

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	if opts.Dir == "" && !opts.InMemory && opts.Backend == nil {
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

// keyWriters are four goroutines that store new keys of 2 KiB in sc as
// fast as they can, each retrying a key until it is stored, so that
// goroutine g's stored keys are "g-0" to "g-(n-1)", counting the failures
// that match expect, and the others.
type keyWriters struct {
	stopping chan struct{}
	wg       sync.WaitGroup
	acked    [4]int
	expected atomic.Int64
	others   atomic.Int64
	other    atomic.Pointer[error] // the last other failure
}

func startKeyWriters(sc *Scope, expect error) *keyWriters {
	w := &keyWriters{stopping: make(chan struct{})}
	value := make([]byte, 2048)
	for g := range w.acked {
		w.wg.Go(func() {
			for {
				select {
				case <-w.stopping:
					return
				default:
				}
				_, err := sc.Do(context.Background(), fmt.Sprint(g, "-", w.acked[g]), nil, func(context.Context) ([]byte, error) { return value, nil })
				switch {
				case err == nil:
					w.acked[g]++
					continue
				case errors.Is(err, expect):
					w.expected.Add(1)
				default:
					w.others.Add(1)
					w.other.Store(&err)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	return w
}

// stop ends the writers and waits for them.
func (w *keyWriters) stop() {
	close(w.stopping)
	w.wg.Wait()
}

// storeNewKeys stores n new keys in sc and returns how many were stored.
func storeNewKeys(sc *Scope, prefix string, n int) int {
	stored := 0
	for i := range n {
		if _, err := sc.Do(context.Background(), fmt.Sprint(prefix, i), nil, func(context.Context) ([]byte, error) { return []byte("v"), nil }); err == nil {
			stored++
		}
	}
	return stored
}
