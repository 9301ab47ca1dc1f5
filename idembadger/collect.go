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
	return b.commit(changes...)
}

// Reclaim implements [backend.Reclaimer]: it compacts the tree into its
// last level, where Badger drops deleted versions, then rewrites value-log
// files until none is worth it, and returns how many it rewrote. It does
// nothing while the directory cannot take a file: a compaction that cannot
// create its tables loses their keys in Badger (see the storage-fault
// row of docs/guarantees.md).
func (b *Backend) Reclaim(ctx context.Context) (int, error) {
	if b.inMemory || b.guard.faulty() {
		return 0, nil
	}
	rewrites := 0
	err := b.engine(func(db *badger.DB, _ *committer) error {
		if err := db.Flatten(1); err != nil {
			return mapBadgerErr(err)
		}
		for ctx.Err() == nil {
			err := db.RunValueLogGC(0.5)
			if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
				break
			}
			if err != nil {
				return mapBadgerErr(err)
			}
			rewrites++
		}
		return ctx.Err()
	})
	return rewrites, err
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
