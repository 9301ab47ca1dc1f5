package idem

import (
	"errors"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// committer is group commit for the Badger backend: the changes of every
// goroutine that writes while a commit is running are gathered into the
// next transaction, so that many claims and completions share one
// transaction and, with SyncWrites, one sync. Each writer still returns
// only after its own change is committed (and synced), so a claim is
// persisted before its function runs and a completion before Do returns.
//
// Merging changes of unrelated callers into one transaction is safe
// because no two changes in a batch can touch the same key: a key's writes
// are issued one at a time by the caller that owns it in its shard, and
// each waits for its commit. Badger's conflict detection, which guards
// read-modify-write races between transactions, has nothing to find, and
// is off (see badgerOptions).
type committer struct {
	db   *badger.DB
	kick chan struct{} // wakes the commit loop; capacity 1
	quit chan struct{} // closed by stop
	done chan struct{} // closed when the loop has ended

	mu     sync.Mutex // guards next and closed
	next   *batch     // changes waiting for the next commit
	closed bool
}

// change is one write of a batch.
type change struct {
	key, value []byte
	meta       byte // Badger's user metadata
	expiresAt  uint64
	delete     bool
}

// batch is a group of changes committed together.
type batch struct {
	changes []change
	done    chan struct{} // closed once committed
	err     error         // set before done is closed
}

func startCommitter(db *badger.DB) *committer {
	c := &committer{
		db:   db,
		kick: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go c.loop()
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
	if c.next == nil {
		c.next = &batch{done: make(chan struct{})}
	}
	b := c.next
	b.changes = append(b.changes, changes...)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default: // the loop is already due to run
	}
	<-b.done
	return b.err
}

func (c *committer) loop() {
	defer close(c.done)
	for {
		select {
		case <-c.kick:
		case <-c.quit:
			c.flush() // whatever arrived before stop
			return
		}
		c.flush()
	}
}

// flush commits the waiting batch, if any.
func (c *committer) flush() {
	c.mu.Lock()
	b := c.next
	c.next = nil
	c.mu.Unlock()
	if b == nil {
		return
	}
	b.err = c.commit(b.changes)
	close(b.done)
}

// commit writes changes in as few transactions as Badger's size limit
// allows.
func (c *committer) commit(changes []change) error {
	txn := c.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for i := 0; i < len(changes); {
		err := add(txn, changes[i])
		if errors.Is(err, badger.ErrTxnTooBig) && i > 0 {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = c.db.NewTransaction(true)
			continue // the same change, in a fresh transaction
		}
		if err != nil {
			return err
		}
		i++
	}
	return txn.Commit()
}

func add(txn *badger.Txn, ch change) error {
	if ch.delete {
		return txn.Delete(ch.key)
	}
	e := badger.NewEntry(ch.key, ch.value).WithMeta(ch.meta)
	e.ExpiresAt = ch.expiresAt
	return txn.SetEntry(e)
}

// stop ends the commit loop after committing what is waiting; writes after
// it fail.
func (c *committer) stop() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	close(c.quit)
	<-c.done
}
