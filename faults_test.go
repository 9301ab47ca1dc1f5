package idem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errInjected = errors.New("injected I/O error")

// faultyBackend fails the next operations of a kind, as a failing disk
// would: reads (Claim and Get), writes (persisted claims and completions)
// and deletions (releases of persisted claims).
type faultyBackend struct {
	Backend
	mu                          sync.Mutex
	failGets, failSets, failDel int
	volatile                    map[string]bool // claims kept in memory, by key
}

func (f *faultyBackend) fail(n *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *n > 0 {
		*n--
		return true
	}
	return false
}

func (f *faultyBackend) Get(ctx context.Context, key []byte) (Entry, bool, error) {
	if f.fail(&f.failGets) {
		return Entry{}, false, errInjected
	}
	return f.Backend.Get(ctx, key)
}

func (f *faultyBackend) Claim(ctx context.Context, key []byte, req ClaimRequest) (ClaimResult, error) {
	if f.fail(&f.failGets) || !req.Volatile && f.fail(&f.failSets) {
		return ClaimResult{}, errInjected
	}
	f.mu.Lock()
	f.volatile[string(key)] = req.Volatile
	f.mu.Unlock()
	return f.Backend.Claim(ctx, key, req)
}

func (f *faultyBackend) Complete(ctx context.Context, key []byte, owner uint64, value []byte, ttl time.Duration) error {
	if f.fail(&f.failSets) {
		return errInjected
	}
	return f.Backend.Complete(ctx, key, owner, value, ttl)
}

func (f *faultyBackend) Release(ctx context.Context, key []byte, owner uint64) error {
	f.mu.Lock()
	volatile := f.volatile[string(key)]
	f.mu.Unlock()
	if !volatile && f.fail(&f.failDel) {
		return errInjected
	}
	return f.Backend.Release(ctx, key, owner)
}

func (f *faultyBackend) set3(gets, sets, dels int) {
	f.mu.Lock()
	f.failGets, f.failSets, f.failDel = gets, sets, dels
	f.mu.Unlock()
}

// openFaulty opens a store whose backend fails on demand; the cache is off
// so that every read reaches it.
func openFaulty(t *testing.T, policy OrphanPolicy) (*Store, *Scope, *faultyBackend) {
	st := openTest(t, Options{CacheBytes: -1, GCInterval: -1})
	fb := &faultyBackend{Backend: st.be, volatile: make(map[string]bool)}
	st.be = fb
	return st, scopeTest(t, st, "s", ScopeOptions{Orphans: policy}), fb
}

// TestFaults checks, for every fault and both orphan policies, that the
// caller gets the error, that no function runs without a persisted claim
// where the policy requires one, that acknowledged results stay, and that
// the store works again once the fault clears.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	for _, policy := range []OrphanPolicy{OrphanRerun, OrphanReport} {
		t.Run(policy.String(), func(t *testing.T) {
			st, sc, fb := openFaulty(t, policy)
			_, err := sc.Do(ctx, "acked", nil, value(new(int), "kept"))
			require.NoError(t, err)

			t.Run("read fails", func(t *testing.T) {
				fb.set3(1, 0, 0)
				runs := 0
				_, err := sc.Do(ctx, "r", nil, value(&runs, "v"))
				assert.ErrorIs(t, err, errInjected)
				assert.Zero(t, runs, "nothing runs when the key cannot be checked")
			})

			t.Run("claim write fails", func(t *testing.T) {
				fb.set3(0, 1, 0)
				runs := 0
				_, err := sc.Do(ctx, "c", nil, value(&runs, "v"))
				if policy == OrphanReport {
					assert.ErrorIs(t, err, errInjected)
					assert.Zero(t, runs, "no function runs without a persisted claim")
				} else {
					// No claim is written under OrphanRerun: the write that
					// fails is the completion, which the caller hears of.
					assert.ErrorIs(t, err, errInjected)
					assert.Equal(t, 1, runs)
				}
			})

			t.Run("completion write fails", func(t *testing.T) {
				fb.set3(0, 0, 0)
				runs := 0
				_, err := sc.Do(ctx, "w", nil, func(context.Context) ([]byte, error) {
					runs++
					fb.set3(0, 1, 0) // the claim went through: fail the completion
					return []byte("lost"), nil
				})
				assert.ErrorIs(t, err, errInjected, "the caller learns the result was not stored")
				_, err = sc.Do(ctx, "w", nil, value(&runs, "again"))
				if policy == OrphanReport {
					assert.ErrorIs(t, err, ErrOutcomeUnknown, "the claim stays: the work ran, its result is lost")
					assert.Equal(t, 1, runs)
				} else {
					assert.NoError(t, err)
					assert.Equal(t, 2, runs, "OrphanRerun runs it again, as after a crash")
				}
			})

			t.Run("release fails", func(t *testing.T) {
				fb.set3(0, 0, 1)
				_, err := sc.Do(ctx, "d", nil, func(context.Context) ([]byte, error) { return nil, errors.New("transient") })
				if policy == OrphanReport {
					assert.ErrorIs(t, err, errInjected, "joined with the function's error")
				} else {
					assert.NoError(t, errors.Unwrap(err), "nothing to delete under OrphanRerun")
				}
				assert.Zero(t, st.Stats().InFlight, "the key is released in the process all the same")
			})

			fb.set3(0, 0, 0)
			res, err := sc.Do(ctx, "acked", nil, value(new(int), "x"))
			require.NoError(t, err)
			assert.Equal(t, "kept", string(res.Value), "acknowledged results survive the faults")
			for i := range 20 {
				_, err := sc.Do(ctx, fmt.Sprint("after-", i), nil, value(new(int), "v"))
				require.NoError(t, err, "the store works once the fault clears")
			}
		})
	}
}

func TestDamagedRecordIsAnErrorForItsKeyOnly(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{CacheBytes: -1, GCInterval: -1})
	sc := scopeTest(t, st, "s", ScopeOptions{})
	for _, k := range []string{"good", "bad"} {
		_, err := sc.Do(ctx, k, nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	k := appendKey(nil, sc.prefix, "bad")
	e, _, err := st.be.Get(ctx, k)
	require.NoError(t, err)
	damaged := bytes.Clone(e.Value)
	damaged[len(damaged)/2] ^= 0x40
	// Written through the contract: a claim that replaces the stored
	// entry, completed with the damaged bytes.
	claimed, err := st.be.Claim(ctx, k, ClaimRequest{Value: []byte("x"), Stale: e.Value})
	require.NoError(t, err)
	require.NotZero(t, claimed.Owner)
	require.NoError(t, st.be.Complete(ctx, k, claimed.Owner, damaged, time.Hour))

	runs := 0
	_, err = sc.Do(ctx, "bad", nil, value(&runs, "x"))
	assert.ErrorIs(t, err, ErrCorrupt)
	assert.Zero(t, runs, "a damaged record never runs the work again nor replays garbage")
	res, err := sc.Do(ctx, "good", nil, value(&runs, "x"))
	require.NoError(t, err)
	assert.Equal(t, "v", string(res.Value))
	info, err := st.Lookup(ctx, "s", "", "bad")
	require.NoError(t, err)
	assert.Equal(t, StateCorrupt, info.State)
	require.NoError(t, st.Delete(ctx, "s", "", "bad"), "an operator can delete it")
	_, err = sc.Do(ctx, "bad", nil, value(&runs, "x"))
	assert.NoError(t, err)
}
