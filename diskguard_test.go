package idem

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
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
	assert.ErrorIs(t, tight.allow(true), ErrDiskFull, "new keys stop at the margin")
	assert.NoError(t, tight.allow(false), "completions go on down to half of it")

	assert.Nil(t, newDiskGuard(Options{Dir: dir, MinFreeDisk: -1}))
	assert.Nil(t, newDiskGuard(Options{InMemory: true}))
	var none *diskGuard
	assert.NoError(t, none.allow(true))
}
