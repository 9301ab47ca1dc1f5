package idem_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
)

// TestCopyOfAStoppedStoreIsABackup checks what docs/operations.md says:
// a copy of a stopped store's directory opens as the store it was, and a
// store restored from it has forgotten the keys completed after the copy.
func TestCopyOfAStoppedStoreIsABackup(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "idem")
	do := func(sc *idem.Scope, key string) idem.Result {
		t.Helper()
		res, err := sc.Do(ctx, key, nil, func(context.Context) ([]byte, error) { return []byte("value of " + key), nil })
		require.NoError(t, err)
		return res
	}
	st, err := idem.Open(idem.Options{Dir: dir, GCInterval: -1})
	require.NoError(t, err)
	sc, err := st.Scope("orders", idem.ScopeOptions{})
	require.NoError(t, err)
	for i := range 100 {
		do(sc, fmt.Sprint("before-", i))
	}
	require.NoError(t, st.Close())

	backup := filepath.Join(t.TempDir(), "backup")
	require.NoError(t, os.CopyFS(backup, os.DirFS(dir)))

	st, err = idem.Open(idem.Options{Dir: dir, GCInterval: -1})
	require.NoError(t, err)
	sc, err = st.Scope("orders", idem.ScopeOptions{})
	require.NoError(t, err)
	do(sc, "after")
	require.NoError(t, st.Close())

	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, os.CopyFS(dir, os.DirFS(backup)))
	st, err = idem.Open(idem.Options{Dir: dir, GCInterval: -1})
	require.NoError(t, err)
	defer st.Close()
	sc, err = st.Scope("orders", idem.ScopeOptions{})
	require.NoError(t, err)
	for i := range 100 {
		res := do(sc, fmt.Sprint("before-", i))
		assert.True(t, res.Replayed, "before-%d is in the backup", i)
		assert.Equal(t, fmt.Sprint("value of before-", i), string(res.Value))
	}
	assert.False(t, do(sc, "after").Replayed, "a key completed after the copy runs again")
}
