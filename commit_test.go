package idem

import (
	"fmt"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCommitterGroupsConcurrentWrites(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	c := startCommitter(db)

	const writers, each = 32, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := []byte(fmt.Sprintf("w%d-%d", w, i))
				if assert.NoError(t, c.write(change{key: k, value: k, expiresAt: 0})) {
					// Acknowledged means visible to a new reader.
					assert.NoError(t, db.View(func(txn *badger.Txn) error { _, err := txn.Get(k); return err }))
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, c.write(change{key: []byte("w0-0"), delete: true}))
	c.stop()
	c.stop() // idempotent
	assert.ErrorIs(t, c.write(change{key: []byte("late")}), badger.ErrDBClosed)

	n := 0
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	}))
	assert.Equal(t, writers*each-1, n)
}

func TestCommitterSplitsOversizedBatches(t *testing.T) {
	// A 1 MiB memtable limits a transaction to about 150 KiB.
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).
		WithMemTableSize(1 << 20).WithValueThreshold(64 << 10))
	require.NoError(t, err)
	defer db.Close()
	c := startCommitter(db)
	defer c.stop()
	var wg sync.WaitGroup
	value := make([]byte, 40<<10)
	for i := range 40 { // 1.6 MiB in all
		wg.Go(func() { assert.NoError(t, c.write(change{key: []byte(fmt.Sprint("k", i)), value: value})) })
	}
	wg.Wait()
}
