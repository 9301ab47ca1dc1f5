package idembadger

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/idemkit/idem/backend"
)

// Badger cannot always survive a failed write. When it cannot create the
// file of its next memtable (the directory was made read-only or deleted,
// the process ran out of file descriptors), the write that needed it
// fails, and Badger is left without a memtable: its next write exits the
// process (an assertion calls log.Fatal), and its next read panics on a
// nil pointer. The disk guard refuses writes before most such faults
// reach Badger (see diskGuard); for the ones that get through, the
// backend contains the damage:
//
//   - A commit that fails stops the committer: nothing is written to that
//     Badger again, so its fatal assertion is never reached. A commit
//     that panics on the committing goroutine fails so too (Badger's
//     own write goroutine is out of reach).
//   - A read that panics inside Badger with a runtime error is recovered
//     and reported as an error.
//   - Either marks the backend as failed: every call returns
//     backend.ErrStorageFault at once, without touching Badger, and a goroutine
//     (mend) waits until the directory can take a file again, then closes
//     Badger and opens it anew, which replays its logs, and clears the
//     fault. Acknowledged writes are in those logs; claims held in memory
//     are not touched.

// storageFault reports a fault of the storage as backend.ErrStorageFault.
func storageFault(err error) error { return fmt.Errorf("%w: %w", backend.ErrStorageFault, err) }

// engine runs fn with the Badger database and its committer, unless the
// backend has failed; a runtime panic inside fn fails it.
func (b *Backend) engine(fn func(db *badger.DB, c *committer) error) (err error) {
	if f := b.fault.Load(); f != nil {
		return storageFault(*f)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	defer func() {
		if r := recover(); r != nil {
			re, ok := r.(runtime.Error)
			if !ok {
				panic(r)
			}
			err = b.fail(fmt.Errorf("badger: %w", re))
		}
	}()
	if f := b.fault.Load(); f != nil { // failed while this call waited for the lock
		return storageFault(*f)
	}
	return fn(b.db, b.commits)
}

// alone runs fn with Badger while none of the backend's commits runs
// (reads go on); an error that fatal accepts fails the backend before any
// waiting commit runs.
func (b *Backend) alone(fn func(c *committer) error, fatal func(error) bool) error {
	err := b.engine(func(_ *badger.DB, c *committer) error {
		return c.alone(func() error { return fn(c) }, fatal)
	})
	if f := b.fault.Load(); err != nil && f != nil {
		return storageFault(*f)
	}
	return err
}

// view runs fn in a Badger read transaction (see engine).
func (b *Backend) view(fn func(txn *badger.Txn) error) error {
	return b.engine(func(db *badger.DB, _ *committer) error { return mapBadgerErr(db.View(fn)) })
}

// fail marks the backend as failed with err, once, and starts mending it.
// It returns err as backend.ErrStorageFault.
func (b *Backend) fail(err error) error {
	if b.fault.CompareAndSwap(nil, &err) {
		b.log.Error("idem: Badger failed; the store refuses calls until it is reopened", "err", err)
		b.mending.Go(b.mend)
	}
	return storageFault(*b.fault.Load())
}

// mendInterval is how often a failed backend looks whether its directory
// can take a file again.
const mendInterval = 100 * time.Millisecond

// mend waits until the directory can take a file again, then reopens
// Badger, until it succeeds or the backend closes.
func (b *Backend) mend() {
	t := time.NewTicker(mendInterval)
	defer t.Stop()
	for {
		select {
		case <-b.closing:
			return
		case <-t.C:
		}
		if probe(b.dir) != nil {
			continue
		}
		if info, err := os.Stat(b.dir); err != nil || !os.SameFile(info, b.dirInfo) {
			// The directory was deleted, or replaced: opening Badger there
			// would start an empty store, and every key would run again.
			b.log.Error("idem: the store's directory is not the one opened; the store stays failed", "dir", b.dir)
			return
		}
		if err := b.reopen(); err != nil {
			b.log.Warn("idem: reopening Badger failed; trying again", "err", err)
			continue
		}
		b.log.Info("idem: Badger reopened after a storage fault")
		return
	}
}

// reopen closes the failed Badger and opens it again, with the same
// options; the fault is cleared once the new one is in place.
func (b *Backend) reopen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db != nil {
		b.commits.stop()
		err := b.closeDB()
		b.db = nil
		if err != nil {
			b.log.Warn("idem: closing the failed Badger", "err", err)
		}
	}
	db, err := openDB(b.bo)
	if err != nil {
		return err
	}
	b.db, b.commits = db, newCommitter(db, b.fail)
	b.fault.Store(nil)
	return nil
}

// faultyCloseTimeout bounds how long Close waits for a Badger that has
// failed, or whose directory cannot take a file: Badger flushes its
// memtables into new files as it closes, and retries for ever.
const faultyCloseTimeout = 5 * time.Second

// closeDB closes Badger; a failed one, or one whose directory cannot take
// a file, is waited for faultyCloseTimeout at most, and then left to its
// goroutines. b.mu is held.
func (b *Backend) closeDB() error {
	var fault error
	if f := b.fault.Load(); f != nil {
		fault = *f
	} else if !b.inMemory {
		fault = probe(b.dir)
	}
	if fault == nil {
		return b.db.Close()
	}
	closed := make(chan error, 1)
	go func() { closed <- b.db.Close() }()
	select {
	case err := <-closed:
		return err
	case <-time.After(faultyCloseTimeout):
		return fmt.Errorf("idem: Badger did not close within %v: %w", faultyCloseTimeout, storageFault(fault))
	}
}

// errCommitterFailed is returned by writes after a commit failed.
var errCommitterFailed = errors.New("idem: a commit failed; Badger must be reopened")
