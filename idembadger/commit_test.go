package idembadger

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCommitterGroupsConcurrentWrites(t *testing.T) {
	db, err := badger.OpenManaged(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	c := newCommitter(db, func(err error) error { return err })

	const writers, each = 32, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				k := []byte(fmt.Sprintf("w%d-%d", w, i))
				if assert.NoError(t, c.write(change{key: k, value: k})) {
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

	assert.Equal(t, writers*each-1, count(t, db))
}

// count returns the number of keys in db.
func count(t *testing.T, db *badger.DB) int {
	t.Helper()
	n := 0
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	}))
	return n
}

func TestCommitterSplitsOversizedBatches(t *testing.T) {
	// A 1 MiB memtable limits a transaction to about 150 KiB.
	db, err := badger.OpenManaged(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).
		WithMemTableSize(1 << 20).WithValueThreshold(64 << 10))
	require.NoError(t, err)
	defer db.Close()
	c := newCommitter(db, func(err error) error { return err })
	defer c.stop()
	var wg sync.WaitGroup
	value := make([]byte, 40<<10)
	for i := range 40 { // 1.6 MiB in all
		wg.Go(func() { assert.NoError(t, c.write(change{key: []byte(fmt.Sprint("k", i)), value: value})) })
	}
	wg.Wait()
}

// TestCommitterStopWaitsForRunningCommits stops the committer while
// writers keep writing: every write either was committed before stop
// returned or fails with ErrDBClosed, and none is left waiting.
func TestCommitterStopWaitsForRunningCommits(t *testing.T) {
	db, err := badger.OpenManaged(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	c := newCommitter(db, func(err error) error { return err })

	var mu sync.Mutex
	var acked [][]byte
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Appendf(nil, "w%d-%d", w, i)
				err := c.write(change{key: k, value: k})
				if errors.Is(err, badger.ErrDBClosed) {
					return
				}
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		})
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 2000 {
			break
		}
		runtime.Gosched()
	}
	c.stop()
	stored := count(t, db)
	wg.Wait()
	assert.Equal(t, stored, count(t, db), "nothing is committed after stop returns")
	assert.LessOrEqual(t, len(acked), stored)
	require.NoError(t, db.View(func(txn *badger.Txn) error {
		for _, k := range acked {
			if _, err := txn.Get(k); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	}))
}

// TestAloneRefusesAfterTheCommitItWaitedForFailed: what runs alone writes
// (the flush key, value-log rewrites), and a failed Badger must not be
// written to again, so alone does not run fn when the commit it waited
// for failed.
func TestAloneRefusesAfterTheCommitItWaitedForFailed(t *testing.T) {
	db, err := badger.OpenManaged(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	c := newCommitter(db, func(err error) error { return err })
	c.writing.RLock() // a commit runs
	done := make(chan error, 1)
	ran := false
	go func() {
		done <- c.alone(func() error { ran = true; return nil }, func(error) bool { return true })
	}()
	for c.writing.TryRLock() { // it succeeds until alone waits for the lock
		c.writing.RUnlock()
		runtime.Gosched()
	}
	c.mu.Lock()
	c.failed = true // as run records a failed commit
	c.mu.Unlock()
	c.writing.RUnlock()
	assert.ErrorIs(t, <-done, errCommitterFailed)
	assert.False(t, ran, "fn ran on a failed Badger")
}

// TestCommitterContainsAPanickingCommit: a commit that panics inside
// Badger with a runtime error fails its batch and stops the committer;
// nobody is left waiting.
func TestCommitterContainsAPanickingCommit(t *testing.T) {
	db, err := badger.OpenManaged(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	c := newCommitter(db, func(err error) error { return err })
	c.db = nil // the next commit dereferences it
	err = c.write(change{key: []byte("k"), value: []byte("v")})
	assert.ErrorContains(t, err, "nil pointer dereference")
	assert.ErrorIs(t, c.write(change{key: []byte("k2"), value: []byte("v")}), errCommitterFailed)
	assert.ErrorIs(t, c.alone(func() error { return nil }, func(error) bool { return true }), errCommitterFailed,
		"the commit's lock is free, and alone refuses")
	requireStops(t, c)
}

// TestCommitterRaisesAnOtherPanicOnceNobodyWaits: a commit that panics
// with something else than a runtime error (Badger's own panics are
// strings) stops the committer and wakes its writers; the panic goes on
// to the writer that ran the commit, and nobody is left waiting.
func TestCommitterRaisesAnOtherPanicOnceNobodyWaits(t *testing.T) {
	db, err := badger.OpenManaged(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	require.NoError(t, err)
	defer db.Close()
	plain, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	require.NoError(t, err)
	defer plain.Close()
	c := newCommitter(db, func(err error) error { return err })
	c.db = plain // NewTransactionAt panics with a string in Badger's own mode
	assert.Panics(t, func() { _ = c.write(change{key: []byte("k"), value: []byte("v")}) })
	written := make(chan error, 1)
	go func() { written <- c.write(change{key: []byte("k2"), value: []byte("v")}) }()
	select {
	case err := <-written:
		assert.ErrorIs(t, err, errCommitterFailed)
	case <-time.After(10 * time.Second):
		t.Fatal("a write waits for a committer that panicked")
	}
	requireStops(t, c)
}

// requireStops fails t if c's stop waits for a commit that panicked.
func requireStops(t *testing.T, c *committer) {
	t.Helper()
	stopped := make(chan struct{})
	go func() { c.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop waits for a commit that panicked")
	}
}

// TestBatchLingersForTheLastBatchsWriters has the last commit carry three
// writers: the next leader waits for two more, and the three are
// committed in one transaction, as soon as the third has joined.
func TestBatchLingersForTheLastBatchsWriters(t *testing.T) {
	db, c := lingering(t, 3, time.Minute) // the timer would end the wait only after a minute
	before := c.version.Load()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			k := []byte(fmt.Sprint("k", i))
			assert.NoError(t, c.write(change{key: k, value: k}))
		})
	}
	wg.Wait()
	assert.Less(t, time.Since(start), 10*time.Second, "the third writer ended the wait")
	assert.Equal(t, before+1, c.version.Load(), "one commit for the three writers")
	assert.Equal(t, 3, count(t, db))
}

// TestBatchThatDoesNotFillIsCommittedAfterItsLinger: a lone writer after
// a batch of three waits out the linger, then commits alone; its next
// write, whose last batch was its own, does not wait.
func TestBatchThatDoesNotFillIsCommittedAfterItsLinger(t *testing.T) {
	db, c := lingering(t, 3, 500*time.Millisecond)
	start := time.Now()
	require.NoError(t, c.write(change{key: []byte("a"), value: []byte("a")}))
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "it waited for the others")
	start = time.Now()
	require.NoError(t, c.write(change{key: []byte("b"), value: []byte("b")}))
	assert.Less(t, time.Since(start), 500*time.Millisecond, "alone again: no wait")
	assert.Equal(t, 2, count(t, db))
}

// TestLingerHoldsOnlyItsOwnBatch: the batch that gathers while the
// leader's batch commits lingers on a goroutine of its own; the leader,
// whose batch is committed, returns at once.
func TestLingerHoldsOnlyItsOwnBatch(t *testing.T) {
	_, c := lingering(t, 2, time.Minute)
	leaders, late := batchAndNext(t, c)
	for range 2 {
		select {
		case err := <-leaders:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("a writer whose batch committed waits for the next batch's linger")
		}
	}
	select {
	case <-late:
		t.Fatal("b's batch of 1 did not wait for a second writer")
	case <-time.After(50 * time.Millisecond):
	}
	c.stop() // ends the linger
	assert.NoError(t, <-late)
}

// TestFailedCommitStrandsTheNextBatchAtOnce: when a commit fails, the
// batch that gathered meanwhile fails at once, without lingering, and
// alone refuses from the moment the failed commit's writers hear of it.
func TestFailedCommitStrandsTheNextBatchAtOnce(t *testing.T) {
	_, c := lingering(t, 2, time.Minute)
	c.db = nil // the next commit dereferences it
	leaders, late := batchAndNext(t, c)
	assert.ErrorContains(t, <-leaders, "nil pointer dereference")
	assert.ErrorIs(t, c.alone(func() error { return nil }, func(error) bool { return true }), errCommitterFailed)
	select {
	case err := <-late:
		assert.ErrorIs(t, err, errCommitterFailed)
	case <-time.After(10 * time.Second):
		t.Fatal("the batch after a failed commit lingers")
	}
	assert.ErrorContains(t, <-leaders, "nil pointer dereference")
}

// batchAndNext has two writers (a1, a2) fill a batch on c, whose last
// batch had two, and one more (b) join the next batch while the first is
// held before its commit; then it lets the commit go. It returns where the
// first two writes and the third report.
func batchAndNext(t *testing.T, c *committer) (leaders, late <-chan error) {
	c.writing.Lock() // commits wait
	var once sync.Once
	release := func() { once.Do(c.writing.Unlock) }
	t.Cleanup(release) // if the test ends first
	first := make(chan error, 2)
	for _, k := range []string{"a1", "a2"} { // the leader waits for the second, then for the lock
		go func() { first <- c.write(change{key: []byte(k), value: []byte(k)}) }()
	}
	held := func(cond func() bool) func() bool {
		return func() bool { c.mu.Lock(); defer c.mu.Unlock(); return cond() }
	}
	require.Eventually(t, held(func() bool { return c.busy && c.next == nil }), 10*time.Second, time.Millisecond, "a1 and a2's batch closes")
	third := make(chan error, 1)
	go func() { third <- c.write(change{key: []byte("b"), value: []byte("b")}) }()
	require.Eventually(t, held(func() bool { return c.next != nil && c.next.writers == 1 }), 10*time.Second, time.Millisecond, "b joins the next batch")
	release()
	return first, third
}

// lingering returns an in-memory Badger and a committer on it whose last
// batch had last writers, and which lingers up to linger.
func lingering(t *testing.T, last int, linger time.Duration) (*badger.DB, *committer) {
	db, err := badger.OpenManaged(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	require.NoError(t, err)
	c := newCommitter(db, func(err error) error { return err })
	t.Cleanup(func() {
		c.stop()
		_ = db.Close()
	})
	c.mu.Lock()
	c.last, c.lingerMax = last, linger
	c.mu.Unlock()
	return db, c
}
