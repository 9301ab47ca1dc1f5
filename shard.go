package idem

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"
)

// shard owns the calls in flight for the keys that hash to it, and a cache
// of their finished records. A key is in the calls map from the moment a
// caller starts looking it up until that caller has stored or released it:
// this is what makes a read followed by a write on the backend an atomic
// check-and-set within the process.
type shard struct {
	mu sync.Mutex // guards calls and cache
	// replays counts the outcomes served from stored records of the
	// shard's keys (Stats.Replays). A counter per shard, beside the mutex
	// its callers take anyway: one counter for the store would be written
	// by every core on every replay.
	replays atomic.Uint64
	calls   map[string]*call // by persisted key
	cache   recordCache
	_       [40]byte // keeps neighbouring shards' mutexes off one cache line
}

// call is one owner's work on a key, which duplicates wait for.
type call struct {
	hash uint64 // the key's (see shards.of), which finds it in the cache

	// Guarded by the shard's mu.
	claimed     bool   // the owner holds the key (and is running)
	fingerprint []byte // the owner's, once claimed
	finished    bool
	// done is closed by finish. It is made by the first duplicate that
	// watches the call: most calls finish with nobody waiting.
	done chan struct{}

	// Written once before done is closed, read only after.
	rec *record // the record the owner found or stored; nil: released
}

// shards is the store's fixed, power-of-two set of shards.
type shards struct {
	seed maphash.Seed // the process's own: keys cannot be chosen to crowd one shard
	mask uint64
	list []shard
}

// newShards makes n shards sharing cacheBytes of record cache.
func newShards(n int, cacheBytes int) shards {
	s := shards{seed: maphash.MakeSeed(), mask: uint64(n - 1), list: make([]shard, n)}
	for i := range s.list {
		s.list[i].calls = make(map[string]*call)
		s.list[i].cache.init(cacheBytes / n)
	}
	return s
}

// replays sums the shards' replay counters.
func (s *shards) replays() uint64 {
	var n uint64
	for i := range s.list {
		n += s.list[i].replays.Load()
	}
	return n
}

// validShardCount reports whether n is a usable Options.Shards value.
func validShardCount(n int) bool { return n > 0 && n <= 1<<16 && bits.OnesCount(uint(n)) == 1 }

// of returns the shard of a persisted key, and the key's hash, which
// finds it in the shard's cache too.
func (s *shards) of(key []byte) (*shard, uint64) {
	h := maphash.Bytes(s.seed, key)
	return &s.list[h&s.mask], h
}

// enter returns the cached record of key, whose hash is h, if there is one
// that lives past horizon (Unix nanoseconds; see Store.hitHorizon), or,
// when horizon is the recent clock's estimate (recent not nil), one that
// lives past what the clock itself says; otherwise the call that owns key
// now, or a new call owned by the caller, which must end with finish. The
// owner gets the heap copy of key that the call is filed under (owned, nil
// for everyone else): the key outlives the call in the claim, the cache
// and the backend, and one copy serves them all. Nothing may modify it.
func (sh *shard) enter(key []byte, h uint64, horizon int64, recent *recentClock) (cached *record, c *call, owned []byte) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c := sh.calls[string(key)]; c != nil {
		return nil, c, nil
	}
	if rec, until := sh.cache.get(h, key); rec != nil {
		if horizon < until || recent != nil && recent.wall().UnixNano() < until {
			return rec, nil, nil // a record near its deadline costs a clock read, not a backend's
		}
		sh.cache.remove(h, key)
	}
	owned = bytes.Clone(key)
	c = &call{hash: h}
	sh.calls[unsafe.String(unsafe.SliceData(owned), len(owned))] = c // not a copy of its own: owned never changes
	return nil, c, owned
}

// claim marks c, still owned, as holding the key for a caller with
// fingerprint, so that duplicates can be told apart while it runs.
func (sh *shard) claim(c *call, fingerprint []byte) {
	sh.mu.Lock()
	c.claimed, c.fingerprint = true, fingerprint
	sh.mu.Unlock()
}

// finishedCall is the done channel of a call that finished before anyone
// watched it.
var finishedCall = func() chan struct{} {
	done := make(chan struct{})
	close(done)
	return done
}()

// watch reports, for a duplicate, whether c has claimed its key and with
// which fingerprint, and returns the channel that is closed once c has
// finished.
func (sh *shard) watch(c *call) (claimed bool, fingerprint []byte, done <-chan struct{}) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	switch {
	case c.finished:
		return c.claimed, c.fingerprint, finishedCall
	case c.done == nil:
		c.done = make(chan struct{})
	}
	return c.claimed, c.fingerprint, c.done
}

// finish ends c's ownership of key and wakes its duplicates with rec (nil:
// the key was released and a duplicate may claim it). A finished rec is
// kept for later replays until cacheUntil (Unix nanoseconds; 0: not kept),
// as a record being replayed (replayed) or one just stored.
//
// With the default backend, records are cached when a replay reads them
// from disk, not when they are first stored: most keys are never retried,
// and caching each completion would fill memory with records nobody asks
// for again, to save a read of a few microseconds. With a shared backend a
// miss costs a network round trip, so outcomes are also cached when they
// are stored (see Claim.end).
func (sh *shard) finish(key []byte, c *call, rec *record, cacheUntil int64, replayed bool) {
	c.rec = rec
	sh.mu.Lock()
	delete(sh.calls, string(key))
	c.finished = true
	done := c.done
	if cacheUntil != 0 && rec != nil && rec.state != stateInProgress {
		sh.cache.put(c.hash, key, rec, cacheUntil, replayed)
	}
	sh.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// own makes the caller the owner of key, whose hash is h, unless a caller
// owns it already (nil). It drops the key's cached record, for a caller
// about to delete it.
func (sh *shard) own(key []byte, h uint64) *call {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.calls[string(key)] != nil {
		return nil
	}
	sh.cache.remove(h, key)
	c := &call{hash: h}
	sh.calls[string(key)] = c
	return c
}

// waitFor blocks until done, a call's (see watch), is closed or ctx ends. A
// waiter that gives up changes nothing: the owner goes on and its outcome
// is stored for later retries.
func waitFor(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrInProgress, ctx.Err())
	}
}
