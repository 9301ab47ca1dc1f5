package idembadger

import (
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"
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
	err := b.commit(changes...)
	if err == nil {
		b.unflushedDeletes.Store(true)
	}
	return err
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
	if b.inMemory {
		return 0, nil
	}
	if b.guard != nil {
		b.guard.look() // the collector's deletions do not look, and the store may be quiet
	}
	if b.guard.faulty() {
		return 0, nil
	}
	if b.unflushedDeletes.Swap(false) {
		// A flush that fails may leave Badger without a memtable, or with
		// one in both its lists: the backend fails, and is reopened.
		if err := b.alone((*committer).flushMemtables, func(err error) bool { return !errors.Is(err, badger.ErrDBClosed) }); err != nil {
			b.unflushedDeletes.Store(true)
			return 0, mapBadgerErr(err)
		}
	}
	err := b.engine(func(db *badger.DB, _ *committer) error { return mapBadgerErr(db.Flatten(1)) })
	rewrites := 0
	for err == nil && ctx.Err() == nil {
		// A rewrite reads the memtable's newest version without the lock
		// that Badger's writes of it hold (a data race in Badger 4.9.6),
		// so none of the store's commits runs meanwhile.
		err = b.alone(func(c *committer) error { return c.db.RunValueLogGC(0.5) }, rewriteFailed)
		if nothingToRewrite(err) {
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

// nothingToRewrite reports whether RunValueLogGC found no file worth
// rewriting (or one rewrite already running).
func nothingToRewrite(err error) bool {
	return errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected)
}

// rewriteFailed reports whether a value-log rewrite failed for another
// reason than having nothing to do or the store closing: the rewrite
// writes, and a failed write may leave Badger unusable.
func rewriteFailed(err error) bool {
	return !nothingToRewrite(err) && !errors.Is(err, badger.ErrDBClosed)
}

// flushKey is stored only to be dropped at once (see
// committer.flushMemtables). It starts with 0x00, outside the keys the
// store uses.
var flushKey = []byte{0x00, 'f', 'l', 'u', 's', 'h'}

// flushMemtables writes Badger's memtables to the tree. Badger does that
// on its own only when one is full, and otherwise only before it drops a
// prefix that is stored: so flushKey is stored, then dropped. Dropping
// refuses writes while it runs, so it runs alone: the commits wait for it
// (the slowest of them, in a collection of 200,000 records, about 200 ms)
// rather than fail. Reads go on.
func (c *committer) flushMemtables() error {
	if err := c.update(func(txn *badger.Txn) error { return txn.Set(flushKey, nil) }); err != nil {
		return err
	}
	return c.db.DropPrefix(flushKey)
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
