package idembadger

import (
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/backend"
)

// TestNoEntryHasAnEngineTTL writes entries of every kind, each with a TTL
// of a second: Badger must hold no TTL of its own for any of them, which
// it would count on the wall clock, while the store dates records by its
// own (see backend.Exclusive).
func TestNoEntryHasAnEngineTTL(t *testing.T) {
	ctx := context.Background()
	b, err := Open(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	req := backend.ClaimRequest{Value: []byte("claim"), Lease: time.Second, TTL: time.Second}
	done, err := b.Claim(ctx, []byte("\x01done"), req)
	require.NoError(t, err)
	require.NoError(t, b.Complete(ctx, []byte("\x01done"), done.Owner, []byte("result"), time.Second))
	_, err = b.Claim(ctx, []byte("\x01held"), req) // persisted, left in progress
	require.NoError(t, err)

	require.NoError(t, b.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{0x01}})
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			assert.Zero(t, it.Item().ExpiresAt(), "entry %q has an engine TTL", it.Item().Key())
		}
		assert.Equal(t, 2, n)
		return nil
	}))
}
