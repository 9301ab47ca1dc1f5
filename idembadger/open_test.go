package idembadger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idembadger"
)

// closedStoreWithOneRecord returns the directory of a closed store whose
// scope "s" holds key "k" with the result "v".
func closedStoreWithOneRecord(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := idem.Open(idem.Options{Dir: dir})
	require.NoError(t, err)
	sc, err := st.Scope("s", idem.ScopeOptions{})
	require.NoError(t, err)
	_, err = sc.Do(context.Background(), "k", nil, func(context.Context) ([]byte, error) { return []byte("v"), nil })
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
			_, err := idem.Open(idem.Options{Dir: dir})
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
			copied, err := idembadger.CopyStore(dir) // Badger's failed open changes the file
			require.NoError(t, err)
			defer os.RemoveAll(copied)
			_, err = badger.Open(idembadger.BadgerOptions(idembadger.Options{Dir: copied, ReadOnly: readOnly}))
			require.Error(t, err, "Badger alone cannot open it")
			t.Log(err)

			st, err := idem.Open(idem.Options{Dir: dir, ReadOnly: readOnly})
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
		st, err := idem.Open(idem.Options{Dir: dir, ReadOnly: readOnly, GCInterval: -1})
		require.NoError(t, err, "read-only %v", readOnly)
		_, err = st.Lookup(context.Background(), "s", "", "k")
		assert.NoError(t, err)
		require.NoError(t, st.Close())
	}
}

// TestOpenStoreWrittenInBadgersOwnMode opens a store whose versions were
// numbered by Badger (as before the store numbered its commits itself),
// with its record rewritten at a version far above 1: a deletion and a new
// record must win over it, and still after a reopen.
func TestOpenStoreWrittenInBadgersOwnMode(t *testing.T) {
	dir := closedStoreWithOneRecord(t)
	db, err := badger.Open(idembadger.BadgerOptions(idembadger.Options{Dir: dir}))
	require.NoError(t, err)
	type kv struct{ key, value []byte }
	var records []kv
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			records = append(records, kv{it.Item().KeyCopy(nil), v})
		}
		return nil
	}))
	for range 100 {
		require.NoError(t, db.Update(func(txn *badger.Txn) error {
			for _, r := range records {
				if err := txn.Set(r.key, r.value); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.Greater(t, db.MaxVersion(), uint64(100))
	require.NoError(t, db.Close())

	ctx := context.Background()
	st, err := idem.Open(idem.Options{Dir: dir})
	require.NoError(t, err)
	rec, err := st.Lookup(ctx, "s", "", "k")
	require.NoError(t, err)
	assert.Equal(t, idem.StateCompleted, rec.State)
	require.NoError(t, st.Delete(ctx, "s", "", "k"))
	_, err = st.Lookup(ctx, "s", "", "k")
	require.ErrorIs(t, err, idem.ErrNotFound)
	sc, err := st.Scope("s", idem.ScopeOptions{})
	require.NoError(t, err)
	got, err := sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { return []byte("w"), nil })
	require.NoError(t, err)
	assert.Equal(t, "w", string(got.Value))
	assert.False(t, got.Replayed)
	require.NoError(t, st.Close())

	st, err = idem.Open(idem.Options{Dir: dir})
	require.NoError(t, err)
	defer st.Close()
	sc, err = st.Scope("s", idem.ScopeOptions{})
	require.NoError(t, err)
	got, err = sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { return []byte("x"), nil })
	require.NoError(t, err)
	assert.Equal(t, "w", string(got.Value), "the record written after the old one, not the old one")
	assert.True(t, got.Replayed)
}
