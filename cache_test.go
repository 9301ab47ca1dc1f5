package idem

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecordCacheEvictsLeastRecentlyUsed(t *testing.T) {
	var c recordCache
	c.init(3 * (cacheEntryOverhead + 2 + 8))
	for i := range 3 {
		putKey(&c, fmt.Append(nil, "k", i), &record{value: make([]byte, 8)}, 1, true)
	}
	require.NotNil(t, first(getKey(&c, []byte("k0")))) // k1 is now the oldest
	putKey(&c, []byte("k3"), &record{value: make([]byte, 8)}, 1, true)
	assert.Nil(t, first(getKey(&c, []byte("k1"))))
	for _, k := range []string{"k0", "k2", "k3"} {
		assert.NotNil(t, first(getKey(&c, []byte(k))), k)
	}
	assert.LessOrEqual(t, c.used, c.limit)

	putKey(&c, []byte("big"), &record{value: make([]byte, c.limit)}, 1, true)
	assert.Nil(t, first(getKey(&c, []byte("big"))), "larger than the cache: not kept")
	assert.NotNil(t, first(getKey(&c, []byte("k3"))), "and nothing evicted for it")

	putKey(&c, []byte("k3"), &record{value: []byte("new")}, 2, true)
	rec, until := getKey(&c, []byte("k3"))
	assert.Equal(t, "new", string(rec.value))
	assert.Equal(t, int64(2), until)
	c.remove(hashOf([]byte("k3")), []byte("k3"))
	assert.Nil(t, first(getKey(&c, []byte("k3"))))
	assert.Len(t, c.entries, 2, true)
}

func first[A, B any](a A, _ B) A { return a }

// testSeed hashes the keys of the cache's own tests, as the shards' seed
// does in a store.
var testSeed = maphash.MakeSeed()

func hashOf(key []byte) uint64 { return maphash.Bytes(testSeed, key) }

// getKey and putKey are recordCache.get and put with the key's hash worked
// out.
func getKey(c *recordCache, key []byte) (*record, int64) { return c.get(hashOf(key), key) }

func putKey(c *recordCache, key []byte, rec *record, until int64, replayed bool) {
	c.put(hashOf(key), key, rec, until, replayed)
}

// TestRecordCacheFindsKeysByHashAndKey: an entry is found only by its own
// key, also under another key's hash; a key that shares an entry's hash
// replaces it; and a cached record is a copy of the one put, which its
// owner may reuse.
func TestRecordCacheFindsKeysByHashAndKey(t *testing.T) {
	var c recordCache
	c.init(1 << 20)
	value, fp := []byte("value"), []byte("fingerprint")
	putKey(&c, []byte("a"), &record{state: stateCompleted, value: value, fingerprint: fp, created: 7}, 10, true)
	value[0], fp[0] = 'X', 'X'
	rec, until := getKey(&c, []byte("a"))
	require.NotNil(t, rec)
	assert.Equal(t, "value", string(rec.value))
	assert.Equal(t, "fingerprint", string(rec.fingerprint))
	assert.Equal(t, int64(7), rec.created)
	assert.Equal(t, int64(10), until)
	assert.Len(t, rec.value, cap(rec.value), "appending to a cached value cannot reach the fingerprint")

	h := hashOf([]byte("a"))
	assert.Nil(t, first(c.get(h, []byte("b"))), "another key under a's hash is not a's record")

	// A key whose hash is a's (forced here: maphash collisions cannot be
	// chosen) replaces a's entry, and the accounting stays whole.
	e := c.entries[h]
	delete(c.entries, h)
	hb := hashOf([]byte("b"))
	e.hash, c.entries[hb] = hb, e
	putKey(&c, []byte("b"), &record{value: []byte("b's")}, 10, true)
	assert.Len(t, c.entries, 1)
	rec, _ = getKey(&c, []byte("b"))
	require.NotNil(t, rec)
	assert.Equal(t, "b's", string(rec.value))
	assert.Nil(t, rec.fingerprint)
	assert.Equal(t, c.used, c.protected.used+c.probation.used)
	assert.Equal(t, c.entries[hb].size, c.used)
}

// TestRecordCacheProtectsReplays fills the cache with records that are
// replayed, then stores many more that nobody replays: those evict each
// other, never the replayed ones.
func TestRecordCacheProtectsReplays(t *testing.T) {
	var c recordCache
	entry := cacheEntryOverhead + 2 + 8
	c.init(10 * entry)
	for i := range 6 {
		putKey(&c, fmt.Append(nil, "r", i), &record{value: make([]byte, 8)}, 1, true)
	}
	for i := range 100 {
		putKey(&c, fmt.Appendf(nil, "s%02d", i), &record{value: make([]byte, 7)}, 1, false)
	}
	for i := range 6 {
		assert.NotNil(t, first(getKey(&c, fmt.Appendf(nil, "r%d", i))), "replayed record r%d kept", i)
	}
	assert.NotNil(t, first(getKey(&c, []byte("s99"))), "the newest stored records are on probation")
	assert.Nil(t, first(getKey(&c, []byte("s00"))))
	assert.LessOrEqual(t, c.used, c.limit)

	// The hit above protected s99: the next burst passes it by.
	for i := range 100 {
		putKey(&c, fmt.Appendf(nil, "n%02d", i), &record{value: make([]byte, 7)}, 1, false)
	}
	assert.NotNil(t, first(getKey(&c, []byte("s99"))))
	assert.NotNil(t, first(getKey(&c, []byte("n99"))))
	assert.Nil(t, first(getKey(&c, []byte("n00"))))
	assert.LessOrEqual(t, c.used, c.limit)
	used := 0
	for _, e := range c.entries {
		used += e.size
	}
	assert.Equal(t, used, c.used)
	assert.Equal(t, c.used, c.protected.used+c.probation.used)
}

// countingBackend counts the lookups (claims and reads) that reach the
// backend.
type countingBackend struct {
	Backend
	gets atomic.Int64
}

func (b *countingBackend) Get(ctx context.Context, key []byte) (Entry, bool, error) {
	b.gets.Add(1)
	return b.Backend.Get(ctx, key)
}

func (b *countingBackend) Claim(ctx context.Context, key []byte, req ClaimRequest) (ClaimResult, error) {
	b.gets.Add(1)
	return b.Backend.Claim(ctx, key, req)
}

func TestCachedReplayChecksExpiryAndFingerprint(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	st := openTest(t, Options{InMemory: true, Now: clock.Now})
	be := &countingBackend{Backend: st.be}
	st.be = be
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Minute})
	_, err := sc.Do(ctx, "k", []byte("fp"), value(new(int), "v"))
	require.NoError(t, err)
	require.Equal(t, int64(1), be.gets.Load())

	for range 3 {
		res, err := sc.Do(ctx, "k", []byte("fp"), value(new(int), "x"))
		require.NoError(t, err)
		assert.Equal(t, "v", string(res.Value))
		assert.True(t, res.Replayed)
	}
	_, err = sc.Do(ctx, "k", []byte("other"), value(new(int), "x"))
	assert.ErrorIs(t, err, ErrFingerprintMismatch)
	assert.Equal(t, int64(2), be.gets.Load(), "the first replay read the disk, the others the cache")

	clock.Advance(time.Minute)
	runs := 0
	res, err := sc.Do(ctx, "k", []byte("fp"), value(&runs, "fresh"))
	require.NoError(t, err)
	assert.False(t, res.Replayed, "expired in the cache is expired")
	assert.Equal(t, 1, runs)
}

func TestNoCache(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{InMemory: true, CacheBytes: -1})
	be := &countingBackend{Backend: st.be}
	st.be = be
	sc := scopeTest(t, st, "s", ScopeOptions{})
	for range 3 {
		_, err := sc.Do(ctx, "k", nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	assert.Equal(t, int64(3), be.gets.Load())
}
