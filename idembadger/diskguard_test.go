package idembadger

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	t.Cleanup(g.stop)
	var wg sync.WaitGroup
	for range 32 { // the very first calls, at once, see the real figure
		wg.Go(func() { assert.NoError(t, g.allow(true)) })
	}
	wg.Wait()

	tight := newDiskGuard(Options{Dir: dir, MinFreeDisk: free * 3 / 2})
	t.Cleanup(tight.stop)
	assert.ErrorIs(t, tight.allow(true), backend.ErrDiskFull, "new keys stop at the margin")
	assert.NoError(t, tight.allow(false), "completions go on down to half of it")

	off := newDiskGuard(Options{Dir: dir, MinFreeDisk: -1})
	t.Cleanup(off.stop)
	assert.Less(t, off.min, int64(0), "a negative MinFreeDisk turns the space check off")
	assert.NoError(t, off.allow(true))
	assert.Nil(t, newDiskGuard(Options{InMemory: true}))
	var none *diskGuard
	assert.NoError(t, none.allow(true))
}

// TestDiskGuardRefusesADirectoryThatCannotTakeAFile removes the store's
// directory from under the guard, then puts it back: writes get
// backend.ErrStorageFault in between, from the first look after the
// removal (which runs beside the callers, not in one, once the interval
// has passed), and go on once it is back.
func TestDiskGuardRefusesADirectoryThatCannotTakeAFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	require.NoError(t, os.Mkdir(dir, 0o755))
	g := newDiskGuard(Options{Dir: dir, MinFreeDisk: -1})
	require.NoError(t, g.allow(true))
	require.NoError(t, os.Remove(dir))
	assert.Eventually(t, func() bool { return errors.Is(g.allow(true), backend.ErrStorageFault) }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, g.allow(false), backend.ErrStorageFault, "completions too")
	require.NoError(t, os.Mkdir(dir, 0o755))
	assert.Eventually(t, func() bool { return g.allow(true) == nil }, 5*time.Second, time.Millisecond,
		"writes go on once the directory takes files again")
	g.stop()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "the probe leaves nothing behind")
}

// TestDiskGuardStopsLooking holds a look in its probe: callers are not
// kept waiting for it, none starts a second look beside it, stop waits for
// it to end, and no look starts after stop, so nothing is left in the
// directory.
func TestDiskGuardStopsLooking(t *testing.T) {
	dir := t.TempDir()
	g := newDiskGuard(Options{Dir: dir})
	var probes atomic.Int32
	entered, release := make(chan struct{}, 1), make(chan struct{})
	g.probe = func(dir string) error {
		probes.Add(1)
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return probe(dir)
	}
	g.due.Store(true)
	require.NoError(t, g.allow(true), "the caller does not wait for the look it started")
	<-entered
	for range 100 {
		g.due.Store(true)
		require.NoError(t, g.allow(true))
	}
	assert.Equal(t, int32(1), probes.Load(), "one look at a time")

	stopped := make(chan struct{})
	go func() {
		g.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("stop returned while a look was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-stopped
	g.due.Store(true)
	require.NoError(t, g.allow(true))
	assert.Equal(t, int32(1), probes.Load(), "no look starts after stop")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no probe file is left behind")
}
