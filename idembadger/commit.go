package idembadger

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// committer is group commit for the Badger backend: the changes of every
// goroutine that writes while a commit is running are gathered into the
// next transaction, so that many claims and completions share one
// transaction and, with SyncWrites, one sync. Each writer still returns
// only after its own change is committed (and synced), so a claim is
// persisted before its function runs and a completion before Do returns.
//
// A writer that finds no commit running commits on its own goroutine: a
// lone writer pays no hand-off to another goroutine and back. The batch
// that gathers during a commit is committed when it ends, by a new
// goroutine, so that the writers of the first batch return without
// waiting for the second.
//
// Commits are quick (see managed mode, below), and much of their cost is
// the same for one change as for thirty, so a batch with fewer writers
// than the last one waits up to lingerMax for the writers that commit
// released to come back and join it (linger). A lone writer does not
// wait, its last batch being its own, but for once right after a burst.
// Nor does the wait go through the scheduler's global queue, as a yield
// (runtime.Gosched) would: behind every CPU-bound goroutine of the
// process (20-80 ms with 2-8 busy goroutines, against 20 µs).
//
// Merging changes of unrelated callers into one transaction is safe
// because no two changes in a batch can touch the same key: a key's writes
// are issued one at a time by the caller that owns it in its shard, and
// each waits for its commit. Badger's conflict detection, which guards
// read-modify-write races between transactions, has nothing to find, and
// is off (see badgerOptions).
//
// Badger runs in managed mode, and the committer numbers its commits
// itself (version). In Badger's own mode every transaction starts by
// waiting until a goroutine of Badger's has marked every earlier commit
// done; under load that goroutine waits its turn behind the callers, and
// the wait took almost as long as the commit itself (new keys ran 6-21%
// faster without it). The store needs none of what the wait buys: it never
// reads several keys as of one moment, and it reads a key only while
// nobody writes it (its owner holds it in the shard until its write
// returns), so reads take the newest version (newTxn). Each commit lets
// Badger discard the versions below its own, as Badger's own mode does
// once no reader needs them.
//
// A commit that fails stops the committer for good (see badger_mend.go):
// Badger may be one write away from exiting the process. The writers
// waiting for the next batch, and every later one, get
// errCommitterFailed, and onFail hears of the failure once.
type committer struct {
	db      *badger.DB
	onFail  func(error) error
	version atomic.Uint64  // the newest version handed out (a failed commit leaves a gap)
	running sync.WaitGroup // 1 while commits run, from the writer that starts them until no batch waits

	// writing is held shared by each commit, and exclusively by alone:
	// what must not run beside a commit waits for the ones running, and
	// holds up only the next ones, not reads.
	writing sync.RWMutex

	mu     sync.Mutex // guards next, busy, last, closed and failed
	next   *batch     // changes waiting for the next commit
	busy   bool       // a commit is running, and will see to next
	last   int        // the writers of the last batch committed
	closed bool
	failed bool

	lingerMax time.Duration // see linger; lingerMax unless a test sets it
}

// change is one write of a batch.
type change struct {
	key, value []byte
	meta       byte // Badger's user metadata
	delete     bool
}

// batch is a group of changes committed together.
type batch struct {
	changes []change
	writers int           // the writes whose changes these are
	done    chan struct{} // closed once committed
	err     error         // set before done is closed

	// While the batch lingers, full is closed by the writer that brings
	// it to target writers, or by stop.
	full   chan struct{}
	target int
}

// lingerMax bounds how long a batch waits for the writers of the last
// one to join it.
const lingerMax = 50 * time.Microsecond

// newCommitter commits to db, opened in managed mode, after the newest
// version it holds (a store written in Badger's own mode has versions too),
// and lets Badger discard what lies below that version at once, as Badger's
// own mode does at Open: a reopened Badger may compact before its first
// commit, and what a compaction keeps may stay for good.
func newCommitter(db *badger.DB, onFail func(error) error) *committer {
	c := &committer{db: db, onFail: onFail, lingerMax: lingerMax}
	v := db.MaxVersion()
	c.version.Store(v)
	db.SetDiscardTs(v)
	return c
}

// write commits changes together with whatever else is waiting, and
// returns when they are durable (as durable as SyncWrites makes them).
func (c *committer) write(changes ...change) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return badger.ErrDBClosed
	}
	if c.failed {
		c.mu.Unlock()
		return errCommitterFailed
	}
	if c.next == nil {
		c.next = &batch{done: make(chan struct{})}
	}
	b := c.next
	b.changes = append(b.changes, changes...)
	b.writers++
	if b.writers >= b.target {
		b.endLinger()
	}
	lead := !c.busy
	if lead {
		c.busy = true
		c.running.Add(1)
	}
	c.mu.Unlock()
	if lead {
		c.run(b)
	}
	<-b.done
	return b.err
}

// linger holds b open, with c.mu released, until it has as many writers
// as the last batch committed or c.lingerMax has passed: the writers that
// commit released are likely to write again soon, and a batch they join
// costs each of them a share of one commit instead of a commit of its
// own. The joiner that fills b wakes the lingering goroutine directly;
// only a batch that does not fill waits for the timer. It is called with
// c.mu held, and returns with it held.
func (c *committer) linger(b *batch) {
	full := make(chan struct{})
	b.full, b.target = full, c.last
	c.mu.Unlock()
	t := time.NewTimer(c.lingerMax)
	select {
	case <-full:
	case <-t.C:
	}
	t.Stop()
	c.mu.Lock()
	b.full = nil
}

// endLinger wakes the goroutine that lingers on b, if one does; the
// committer's mu is held.
func (b *batch) endLinger() {
	if b.full != nil {
		close(b.full)
		b.full = nil
	}
}

// run commits b, which is still c.next, open to writers, once it lingers
// if it must; then the batches that gather meanwhile, one after the other,
// each on a new goroutine (which lingers, not the writer that committed
// the last batch).
func (c *committer) run(b *batch) {
	c.mu.Lock()
	if c.last > 1 && b.writers < c.last && !c.failed && !c.closed {
		c.linger(b)
	}
	c.next = nil // b closes; later writers gather in a batch of their own
	c.mu.Unlock()
	panicked, err := c.commitContained(b.changes)
	// errCommitterFailed: failed already, and onFail told.
	failed := err != nil && !errors.Is(err, badger.ErrDBClosed) && !errors.Is(err, badger.ErrBlockedWrites) && !errors.Is(err, errCommitterFailed)
	c.mu.Lock()
	c.last = b.writers
	c.failed = c.failed || failed // before anyone hears of it: alone must not run on a failed Badger
	next := c.next
	c.busy = next != nil && !c.failed
	stranded := next != nil && !c.busy // gathered for a committer that stopped
	if stranded {
		c.next = nil
	}
	c.mu.Unlock()
	if failed {
		err = c.onFail(err)
	}
	b.err = err
	close(b.done)
	if stranded {
		next.err = errCommitterFailed
		close(next.done)
		next = nil
	}
	if next == nil {
		c.running.Done()
		if panicked != nil {
			panic(panicked) // now that nobody waits
		}
		return
	}
	go c.run(next)
}

// commitContained is commit with a panic inside Badger turned into the
// commit's failure: run wakes the batch's writers with it and stops the
// committer, where the panic would leave them, and stop, waiting for ever.
// A panic that is not a runtime error is returned too, for run to raise
// again once nobody waits (engine contains only runtime errors).
func (c *committer) commitContained(changes []change) (panicked any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("badger: panic: %v", r)
			if _, ok := r.(runtime.Error); !ok {
				panicked = r
			}
		}
	}()
	return nil, c.commit(changes)
}

// commit writes changes in as few transactions as Badger's size limit
// allows.
func (c *committer) commit(changes []change) error {
	c.writing.RLock()
	defer c.writing.RUnlock()
	if c.hasFailed() { // by alone, while this batch waited
		return errCommitterFailed
	}
	txn := c.newTxn()
	defer func() { txn.Discard() }()
	for i := 0; i < len(changes); {
		err := add(txn, changes[i])
		if errors.Is(err, badger.ErrTxnTooBig) && i > 0 {
			if err := c.commitTxn(txn); err != nil {
				return err
			}
			txn = c.newTxn()
			continue // the same change, in a fresh transaction
		}
		if err != nil {
			return err
		}
		i++
	}
	return c.commitTxn(txn)
}

// newTxn begins a write transaction that reads the newest version.
func (c *committer) newTxn() *badger.Txn { return c.db.NewTransactionAt(math.MaxUint64, true) }

// commitTxn commits txn as the next version.
func (c *committer) commitTxn(txn *badger.Txn) error {
	v := c.version.Add(1)
	if err := txn.CommitAt(v, nil); err != nil {
		return err
	}
	c.db.SetDiscardTs(v)
	return nil
}

// update runs fn in a write transaction and commits it; for writes outside
// the batches (the epoch, the flush key).
func (c *committer) update(fn func(txn *badger.Txn) error) error {
	txn := c.newTxn()
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	return c.commitTxn(txn)
}

func add(txn *badger.Txn, ch change) error {
	if ch.delete {
		return txn.Delete(ch.key)
	}
	return txn.SetEntry(badger.NewEntry(ch.key, ch.value).WithMeta(ch.meta))
}

// alone runs fn while no commit runs. If fn fails in a way that may have
// left Badger unusable (fatal), or panics, the committer stops, as after a
// failed commit, before any waiting commit can reach Badger.
func (c *committer) alone(fn func() error, fatal func(error) bool) (err error) {
	c.writing.Lock()
	defer c.writing.Unlock()
	if c.hasFailed() { // by the commit this call waited for
		return errCommitterFailed
	}
	defer func() {
		if r := recover(); r != nil {
			_ = c.stopFor(fmt.Errorf("badger: panic: %v", r)) // before any waiting commit runs
			panic(r)
		}
	}()
	err = fn()
	if err != nil && fatal(err) {
		return c.stopFor(err)
	}
	return err
}

// hasFailed reports whether a commit, or what ran alone, failed.
func (c *committer) hasFailed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// stopFor stops the committer for good because of err, and tells onFail.
func (c *committer) stopFor(err error) error {
	c.mu.Lock()
	c.failed = true
	c.mu.Unlock()
	return c.onFail(err)
}

// stop waits for the commits that are running or waiting; writes after it
// fail.
func (c *committer) stop() {
	c.mu.Lock()
	c.closed = true
	if c.next != nil {
		c.next.endLinger() // commit it now
	}
	c.mu.Unlock()
	c.running.Wait()
}
