package idem

import (
	"context"
	"fmt"
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
		c.put(fmt.Sprint("k", i), &record{value: make([]byte, 8)}, 1)
	}
	require.NotNil(t, first(c.get([]byte("k0")))) // k1 is now the oldest
	c.put("k3", &record{value: make([]byte, 8)}, 1)
	assert.Nil(t, first(c.get([]byte("k1"))))
	for _, k := range []string{"k0", "k2", "k3"} {
		assert.NotNil(t, first(c.get([]byte(k))), k)
	}
	assert.LessOrEqual(t, c.used, c.limit)

	c.put("big", &record{value: make([]byte, c.limit)}, 1)
	assert.Nil(t, first(c.get([]byte("big"))), "larger than the cache: not kept")
	assert.NotNil(t, first(c.get([]byte("k3"))), "and nothing evicted for it")

	c.put("k3", &record{value: []byte("new")}, 2)
	rec, until := c.get([]byte("k3"))
	assert.Equal(t, "new", string(rec.value))
	assert.Equal(t, int64(2), until)
	c.remove("k3")
	assert.Nil(t, first(c.get([]byte("k3"))))
	assert.Len(t, c.entries, 2)
}

func first[A, B any](a A, _ B) A { return a }

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
