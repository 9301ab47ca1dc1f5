package idem

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A duplicate waits on a channel that the first watch makes, whether it
// watches before the owner finishes or after.
func TestDuplicatesWaitForTheOwner(t *testing.T) {
	ss := newShards(1, 1<<20)
	key := []byte("\x01scope\x00key")
	sh, h := ss.of(key)

	_, c, owned := sh.enter(key, h, 0, nil)
	require.NotNil(t, owned, "the first caller owns the key")
	assert.Equal(t, key, owned)
	assert.NotSame(t, &key[0], &owned[0], "the owner's key is a copy")

	_, dup, notOwned := sh.enter(key, h, 0, nil)
	require.Same(t, c, dup, "a second caller gets the owner's call")
	assert.Nil(t, notOwned)

	sh.claim(c, []byte("fp"))
	claimed, fp, done := sh.watch(c)
	assert.True(t, claimed)
	assert.Equal(t, []byte("fp"), fp)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, waitFor(ctx, done), ErrInProgress, "the owner has not finished")

	rec := &record{state: stateCompleted, value: []byte("v")}
	sh.finish(owned, c, rec, 0, false)
	require.NoError(t, waitFor(context.Background(), done))
	assert.Same(t, rec, c.rec)

	// A duplicate that found the call before it finished, and watches
	// only after, does not wait.
	_, again, _ := sh.enter(key, h, 0, nil)
	_, _, lateDone := sh.watch(c)
	select {
	case <-lateDone:
	default:
		t.Fatal("a finished call's channel is open")
	}
	sh.finish(key, again, nil, 0, false)
}
