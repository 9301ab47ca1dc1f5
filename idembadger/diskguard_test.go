package idembadger

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/idemkit/idem/backend"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDiskGuard(t *testing.T) {
	dir := t.TempDir()
	free, ok := freeSpace(dir)
	if !ok {
		t.Skip("free space cannot be read on this system")
	}
	g := newDiskGuard(Options{Dir: dir})
	var wg sync.WaitGroup
	for range 32 { // the very first calls, at once, see the real figure
		wg.Go(func() { assert.NoError(t, g.allow(true)) })
	}
	wg.Wait()

	tight := newDiskGuard(Options{Dir: dir, MinFreeDisk: free * 3 / 2})
	assert.ErrorIs(t, tight.allow(true), backend.ErrDiskFull, "new keys stop at the margin")
	assert.NoError(t, tight.allow(false), "completions go on down to half of it")

	off := newDiskGuard(Options{Dir: dir, MinFreeDisk: -1})
	assert.Less(t, off.min, int64(0), "a negative MinFreeDisk turns the space check off")
	assert.NoError(t, off.allow(true))
	assert.Nil(t, newDiskGuard(Options{InMemory: true}))
	var none *diskGuard
	assert.NoError(t, none.allow(true))
}

// TestDiskGuardRefusesADirectoryThatCannotTakeAFile removes the store's
// directory from under the guard, then puts it back: writes get
// backend.ErrStorageFault in between, and go on once it is back.
func TestDiskGuardRefusesADirectoryThatCannotTakeAFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	require.NoError(t, os.Mkdir(dir, 0o755))
	g := newDiskGuard(Options{Dir: dir, MinFreeDisk: -1})
	require.NoError(t, g.allow(true))
	require.NoError(t, os.Remove(dir))
	g.checked.Store(0) // look now
	assert.ErrorIs(t, g.allow(true), backend.ErrStorageFault)
	assert.ErrorIs(t, g.allow(false), backend.ErrStorageFault, "completions too")
	require.NoError(t, os.Mkdir(dir, 0o755))
	g.checked.Store(0)
	assert.NoError(t, g.allow(true), "writes go on once the directory takes files again")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "the probe leaves nothing behind")
}
