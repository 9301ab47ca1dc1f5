package idembadger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
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

// TestReclaimWhileWriting reclaims, flushing the memtables after
// deletions and rewriting value-log files, while writers claim and
// complete keys: every write must succeed (Badger refuses writes while it
// flushes for a drop), every completed key stays readable, and under
// -race no rewrite races with a commit.
func TestReclaimWhileWriting(t *testing.T) {
	ctx := context.Background()
	b, err := Open(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	value := bytes.Repeat([]byte("v"), 200) // in the value log
	stop := make(chan struct{})
	var writers sync.WaitGroup
	var written [4][][]byte
	for w := range written {
		writers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Appendf(nil, "\x01w%d-%d", w, i)
				res, err := b.Claim(ctx, key, newKeyClaim)
				if !assert.NoError(t, err) {
					return
				}
				if !assert.NoError(t, b.Complete(ctx, key, res.Owner, value, time.Hour)) {
					return
				}
				written[w] = append(written[w], key)
			}
		})
	}
	// 1 MiB deleted a round: the first value-log file fills, and the
	// later reclaims rewrite it while the writers write.
	big := bytes.Repeat([]byte("d"), 4096)
	rewrites := 0
	for round := range 24 {
		var doomed [][]byte
		for i := range 256 {
			k := fmt.Appendf(nil, "\x01d%d-%d", round, i)
			completeKey(t, b, k, big)
			doomed = append(doomed, k)
		}
		require.NoError(t, b.DeleteAll(ctx, doomed))
		n, err := b.Reclaim(ctx)
		require.NoError(t, err)
		rewrites += n
	}
	close(stop)
	writers.Wait()
	n := 0
	for _, keys := range written {
		for _, k := range keys {
			e, found, err := b.Get(ctx, k)
			require.NoError(t, err)
			require.True(t, found, "%q", k)
			require.Equal(t, value, e.Value)
			n++
		}
	}
	t.Logf("%d keys written during 24 reclaims, which rewrote %d value-log files", n, rewrites)
	assert.NotZero(t, n)
	assert.NotZero(t, rewrites)
}

// A value Badger would refuse is refused for its call alone: in a batch,
// Badger's refusal would fail every change of it, and the backend.
func TestValueOverTheLimitFailsItsCallOnly(t *testing.T) {
	ctx := context.Background()
	b, err := Open(Options{InMemory: true})
	require.NoError(t, err)
	defer b.Close()
	res, err := b.Claim(ctx, []byte("\x01big"), newKeyClaim)
	require.NoError(t, err)
	assert.Error(t, b.Complete(ctx, []byte("\x01big"), res.Owner, make([]byte, b.MaxValue()+1), time.Hour))
	require.NoError(t, b.Complete(ctx, []byte("\x01big"), res.Owner, make([]byte, b.MaxValue()), time.Hour))
	for _, k := range [][]byte{nil, make([]byte, maxBadgerKey+1), []byte(badgerPrefix + "x")} {
		assert.Error(t, b.Delete(ctx, k), "key of %d bytes", len(k))
		assert.Error(t, b.DeleteAll(ctx, [][]byte{k}), "key of %d bytes", len(k))
	}
	completeKey(t, b, []byte("\x01after"), []byte("done"))
}

// A panic while nothing else may commit fails the backend at once, before
// a waiting commit could reach Badger, even when the panic is recovered
// further up (as net/http does for a handler).
func TestPanicAloneFailsTheBackend(t *testing.T) {
	b, err := Open(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	func() {
		defer func() { _ = recover() }()
		_ = b.alone(func(*committer) error { panic("inside") }, func(error) bool { return true })
	}()
	_, err = b.Claim(context.Background(), []byte("\x01k"), backend.ClaimRequest{Value: []byte("c"), Lease: time.Minute, TTL: time.Hour})
	assert.ErrorIs(t, err, backend.ErrStorageFault)
}

// TestReclaimAfterAMendDropsDeletedRecords deletes every record of a
// store, has Badger fail and be reopened, and collects before anything
// else is written: the deletions and the versions they hide are dropped
// from the tree. (A Badger reopened in managed mode discards nothing
// until told it may, and a store flattened into one level keeps what a
// compaction kept.)
func TestReclaimAfterAMendDropsDeletedRecords(t *testing.T) {
	ctx := context.Background()
	b, err := Open(Options{Dir: t.TempDir()})
	require.NoError(t, err)
	defer b.Close()
	key := func(i int) []byte { return fmt.Appendf(nil, "\x01k%07d", i) }
	const n, chunk = 150_000, 1000
	write := func(deleted bool) {
		for i := 0; i < n; i += chunk {
			changes := make([]change, 0, chunk)
			for j := i; j < i+chunk; j++ {
				changes = append(changes, change{key: key(j), value: bytes.Repeat([]byte("v"), 100), delete: deleted})
			}
			require.NoError(t, b.commit(changes...))
		}
	}
	write(false)
	require.NoError(t, b.DeleteAll(ctx, [][]byte{key(0)})) // so that Reclaim flushes the memtables
	_, err = b.Reclaim(ctx)
	require.NoError(t, err)
	write(true)
	_ = b.fail(errors.New("injected"))
	require.Eventually(t, func() bool { return b.fault.Load() == nil }, 10*time.Second, 10*time.Millisecond, "reopened")
	_, err = b.Reclaim(ctx)
	require.NoError(t, err)
	entries := 0
	require.NoError(t, b.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			entries++
		}
		return nil
	}))
	assert.LessOrEqual(t, entries, 2, "versions left in the tree of %d deleted records", n)
}
