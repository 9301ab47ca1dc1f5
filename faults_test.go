package idem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
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
	buf, _, _, err := st.local.get(nil, k)
	require.NoError(t, err)
	buf[len(buf)/2] ^= 0x40
	require.NoError(t, st.local.write(change{key: k, value: buf}))

	runs := 0
	_, err = sc.Do(ctx, "bad", nil, value(&runs, "x"))
	assert.ErrorIs(t, err, ErrCorrupt)
	assert.Zero(t, runs, "a damaged record never runs the work again nor replays garbage")
	res, err := sc.Do(ctx, "good", nil, value(&runs, "x"))
	require.NoError(t, err)
	assert.Equal(t, "v", string(res.Value))
	info, err := st.Lookup(ctx, "s", "", "bad")
	require.NoError(t, err)
	assert.Equal(t, "corrupt", info.State)
	require.NoError(t, st.Delete(ctx, "s", "", "bad"), "an operator can delete it")
	_, err = sc.Do(ctx, "bad", nil, value(&runs, "x"))
	assert.NoError(t, err)
}

// closedStoreWithOneRecord returns the directory of a closed store whose
// scope "s" holds key "k" with the result "v".
func closedStoreWithOneRecord(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	_, err = scopeTest(t, st, "s", ScopeOptions{}).Do(context.Background(), "k", nil, value(new(int), "v"))
	require.NoError(t, err)
	require.NoError(t, st.Close())
	return dir
}

// TestOpenDamagedDirectory damages the files Badger reads at Open; each
// gives an error, not a crash. (A damaged table file is the exception:
// Badger panics in a goroutine of its own while opening it, which no
// caller can recover from.)
func TestOpenDamagedDirectory(t *testing.T) {
	for _, name := range []string{"MANIFEST", "KEYREGISTRY", "000001.vlog"} {
		t.Run(name, func(t *testing.T) {
			dir := closedStoreWithOneRecord(t)
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("not what Badger wrote"), 0o644))
			_, err := Open(Options{Dir: dir})
			assert.Error(t, err)
		})
	}
}

// A process killed while Badger creates a value log file leaves the file
// empty, and Badger then refuses to open the directory ("Create a new
// file"). The store opens all the same, writable or read-only, with every
// record.
func TestOpenAfterKillLeftAnEmptyValueLog(t *testing.T) {
	for _, readOnly := range []bool{false, true} {
		t.Run(fmt.Sprint("readOnly=", readOnly), func(t *testing.T) {
			dir := closedStoreWithOneRecord(t)
			logs, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
			require.NoError(t, err)
			empty := filepath.Join(dir, fmt.Sprintf("%06d.vlog", len(logs)+1))
			require.NoError(t, os.WriteFile(empty, nil, 0o644))
			copied, err := copyStore(dir) // Badger's failed open changes the file
			require.NoError(t, err)
			defer os.RemoveAll(copied)
			_, err = badger.Open(badgerOptions(Options{Dir: copied, ReadOnly: readOnly}))
			require.Error(t, err, "Badger alone cannot open it")
			t.Log(err)

			st, err := Open(Options{Dir: dir, ReadOnly: readOnly})
			require.NoError(t, err)
			defer st.Close()
			rec, err := st.Lookup(context.Background(), "s", "", "k")
			require.NoError(t, err)
			assert.Equal(t, "v", string(rec.Value))
			if readOnly {
				info, err := os.Stat(empty)
				require.NoError(t, err, "a read-only open changes nothing")
				assert.Zero(t, info.Size())
			}
		})
	}
}

// TestOpenWithAnEmptiedMemtableLog opens a store in which Badger emptied a
// memtable's log file but could not remove it (a failed unlink, as in a
// read-only directory, leaves it so): both a writable and a read-only
// Open see every record.
func TestOpenWithAnEmptiedMemtableLog(t *testing.T) {
	dir := closedStoreWithOneRecord(t)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00099.mem"), nil, 0o644))
	for _, readOnly := range []bool{true, false} {
		st, err := Open(Options{Dir: dir, ReadOnly: readOnly, GCInterval: -1})
		require.NoError(t, err, "read-only %v", readOnly)
		_, err = st.Lookup(testCtx(t), "s", "", "k")
		assert.NoError(t, err)
		require.NoError(t, st.Close())
	}
}
