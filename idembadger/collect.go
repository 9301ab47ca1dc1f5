package idembadger

import (
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"
	"github.com/idemkit/idem/backend"
)

// Badger keeps no TTL of its own for the store's entries: every entry
// stays until it is deleted, so that only the store's clock decides when
// one has expired (see backend.Exclusive), and the store's collector
// deletes it through Sweep and DeleteAll, then has Reclaim give the space
// back.

// Sweep implements [backend.Sweeper]: it calls fn for up to limit entries
// whose keys start with prefix, from start on, in key order, with their
// values (an in-progress entry's framing taken off), and returns the key
// to go on from (nil at the end). Each call is one read transaction.
func (b *Backend) Sweep(ctx context.Context, prefix, start []byte, limit int, fn func(key, value []byte) error) ([]byte, error) {
	var next []byte
	err := b.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		n := 0
		for it.Seek(start); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			if n == limit {
				next = item.KeyCopy(nil)
				return nil
			}
			n++
			err := item.Value(func(v []byte) error {
				if e, err := unframe(v, item.UserMeta()); err == nil {
					v = e.Value
				}
				return fn(item.Key(), v)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return next, err
}

// DeleteAll implements [backend.Sweeper]: it deletes keys in one commit.
// No hold is checked: the store owns them in its shards while it calls.
func (b *Backend) DeleteAll(_ context.Context, keys [][]byte) error {
	changes := make([]change, len(keys))
	for i, k := range keys {
		changes[i] = change{key: k, delete: true}
	}
	b.unflushedDeletes.Store(true)
	return b.commit(changes...)
}

// Reclaim implements [backend.Reclaimer]: after deletions it flushes the
// memtables, where they would otherwise wait for more writes to fill them
// (a memtable holds tens of thousands of records' keys and value
// pointers), then compacts the tree into its last level, where Badger
// drops deleted versions, then rewrites value-log files until none is
// worth it, and returns how many it rewrote. It does nothing while the
// directory cannot take a file: a compaction that cannot create its
// tables loses their keys in Badger (see the storage-fault row of
// docs/guarantees.md).
func (b *Backend) Reclaim(ctx context.Context) (int, error) {
	if b.inMemory || b.guard.faulty() {
		return 0, nil
	}
	if b.unflushedDeletes.Swap(false) {
		if err := b.exclusive(flushMemtables); err != nil {
			b.unflushedDeletes.Store(true)
			if errors.Is(err, badger.ErrDBClosed) || errors.Is(err, backend.ErrStorageFault) {
				return 0, mapBadgerErr(err)
			}
			return 0, b.fail(err) // a memtable may be lost between Badger's lists: reopen
		}
	}
	err := b.engine(func(db *badger.DB, _ *committer) error { return mapBadgerErr(db.Flatten(1)) })
	rewrites := 0
	for err == nil && ctx.Err() == nil {
		// A rewrite reads the memtable's newest version without the lock
		// that Badger's writes of it hold (a data race in Badger 4.9.6),
		// so none of the store's commits runs meanwhile.
		err = b.exclusive(func(db *badger.DB) error { return db.RunValueLogGC(0.5) })
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return rewrites, nil
		}
		if err == nil {
			rewrites++
		}
		err = mapBadgerErr(err)
	}
	if err == nil {
		err = ctx.Err()
	}
	return rewrites, err
}

// flushKey is stored only to be dropped at once (see flushMemtables). It
// starts with 0x00, outside the keys the store uses.
var flushKey = []byte{0x00, 'f', 'l', 'u', 's', 'h'}

// flushMemtables writes Badger's memtables to the tree. Badger does that
// on its own only when one is full, and otherwise only before it drops a
// prefix that is stored: so flushKey is stored, then dropped. Dropping
// refuses writes while it runs, so it runs exclusively: the commits wait
// for it (tens of milliseconds) rather than fail.
func flushMemtables(db *badger.DB) error {
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(flushKey, nil) }); err != nil {
		return err
	}
	return db.DropPrefix(flushKey)
}

// DiskBytes implements [backend.DiskUser]: the sizes of the store's files.
// Value-log files are sparse and preallocated, so their allocated blocks
// are counted, not their length.
func (b *Backend) DiskBytes() int64 {
	if b.inMemory {
		return 0
	}
	return dirSize(b.dir)
}
