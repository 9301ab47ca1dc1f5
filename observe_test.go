package idem

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eventLog is an Observer that keeps every event.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	stores []*Store
}

func (l *eventLog) Observe(_ context.Context, e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) ObserveStore(st *Store) { l.stores = append(l.stores, st) }

// take returns the events since the last take, as "kind outcome" lines.
func (l *eventLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, fmt.Sprintf("%s %s", e.Kind, e.Outcome))
	}
	l.events = nil
	return out
}

func TestObserverSeesEveryOutcome(t *testing.T) {
	ctx := testCtx(t)
	log := &eventLog{}
	st := openTest(t, Options{Observer: log, GCInterval: -1})
	assert.Equal(t, []*Store{st}, log.stores, "a StoreObserver is handed the store")
	sc := scopeTest(t, st, "pay", ScopeOptions{})
	ok := func(context.Context) ([]byte, error) { return []byte("v"), nil }

	_, err := sc.Do(ctx, "k", []byte("fp"), ok)
	require.NoError(t, err)
	assert.Equal(t, []string{"execution completed", "call executed"}, log.take())
	_, err = sc.Do(ctx, "k", []byte("fp"), ok)
	require.NoError(t, err)
	assert.Equal(t, []string{"call replayed"}, log.take())
	_, err = sc.Do(ctx, "k", []byte("other"), ok)
	require.ErrorIs(t, err, ErrFingerprintMismatch)
	assert.Equal(t, []string{"call mismatch"}, log.take())

	_, err = sc.Do(ctx, "declined", nil, func(context.Context) ([]byte, error) { return nil, Permanent(errors.New("no")) })
	require.Error(t, err)
	_, err = sc.Do(ctx, "declined", nil, ok)
	require.Error(t, err)
	assert.Equal(t, []string{"execution failed", "call executed", "call replayed"}, log.take(), "a stored failure is replayed")

	_, err = sc.Do(ctx, "flaky", nil, func(context.Context) ([]byte, error) { return nil, errors.New("later") })
	require.Error(t, err)
	assert.Panics(t, func() {
		_, _ = sc.Do(ctx, "flaky", nil, func(context.Context) ([]byte, error) { panic("bug") })
	})
	assert.Equal(t, []string{"execution released", "call executed", "execution released", "call executed"}, log.take(),
		"a panicking call is reported too")

	cl, err := sc.Claim(ctx, "held", nil)
	require.NoError(t, err)
	_, err = sc.Claim(ctx, "held", nil)
	require.ErrorIs(t, err, ErrInProgress)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := sc.Do(ctx, "held", nil, ok)
		assert.NoError(t, err)
	}()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, cl.Complete(ctx, []byte("v")))
	<-done
	events := log.take()
	require.Len(t, events, 5)
	assert.Equal(t, []string{"call executed", "call in_progress"}, events[:2])
	// The completion is reported on its goroutine, the waiter's wait and
	// replay on the waiter's, which Complete has woken: in either order.
	assert.ElementsMatch(t, []string{"execution completed", "wait ", "call replayed"}, events[2:])
	assert.Less(t, slices.Index(events, "wait "), slices.Index(events, "call replayed"))

	_, err = sc.Do(ctx, "", nil, ok)
	require.Error(t, err)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = sc.Do(cancelled, "c", nil, ok)
	require.Error(t, err)
	assert.Equal(t, []string{"call invalid", "call canceled"}, log.take())

	_, err = st.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"collection "}, log.take())
}

func TestObserverEventsCarryNoKeyUnlessAsked(t *testing.T) {
	ctx := testCtx(t)
	for _, keys := range []bool{false, true} {
		log := &eventLog{}
		st := openTest(t, Options{Observer: log, ObserveKeys: keys, GCInterval: -1})
		sc := scopeTest(t, st, "pay", ScopeOptions{}).Tenant("acct-1")
		_, err := sc.Do(ctx, "secret-key", nil, func(context.Context) ([]byte, error) { return nil, nil })
		require.NoError(t, err)
		for _, e := range log.events {
			assert.Equal(t, "pay", e.Scope)
			if keys && e.Kind == EventCall {
				assert.Equal(t, "secret-key", e.Key)
				assert.Equal(t, "acct-1", e.Tenant)
			} else {
				assert.Empty(t, e.Key)
				assert.Empty(t, e.Tenant)
			}
		}
	}
}

func TestObserverSeesOrphans(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	sc := scopeTest(t, st, "pay", ScopeOptions{Orphans: OrphanReport})
	_, err = sc.Claim(ctx, "k", nil)
	require.NoError(t, err)
	require.NoError(t, st.Close()) // as if the process died with the claim

	log := &eventLog{}
	st = openTest(t, Options{Dir: dir, Observer: log, GCInterval: -1})
	sc = scopeTest(t, st, "pay", ScopeOptions{Orphans: OrphanReport})
	_, err = sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { return nil, nil })
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.Len(t, log.events, 2)
	assert.Equal(t, OrphanReport, log.events[0].Policy)
	assert.Equal(t, []string{"orphan ", "call outcome_unknown"}, log.take())
}
