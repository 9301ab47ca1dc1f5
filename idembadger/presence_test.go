package idembadger

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/idemkit/idem/backend"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBloomHasNoFalseNegatives(t *testing.T) {
	const n = 100_000
	f := newBloom(n)
	for i := range n {
		f.add(fmt.Appendf(nil, "key-%d", i))
	}
	for i := range n {
		require.True(t, f.has(fmt.Appendf(nil, "key-%d", i)), "key %d", i)
	}
	falsePos := 0
	for i := range n {
		if f.has(fmt.Appendf(nil, "other-%d", i)) {
			falsePos++
		}
	}
	t.Logf("false positives at capacity: %.2f%%", 100*float64(falsePos)/n)
	assert.Less(t, falsePos, n/100)
	full := false
	for i := 0; i < n/50 && !full; i++ {
		_, full = f.add(fmt.Appendf(nil, "more-%d", i))
	}
	assert.True(t, full, "over capacity")
}

// waitForKeyScan waits until b's presence filter is in use.
func waitForKeyScan(t *testing.T, b *Backend) {
	t.Helper()
	require.Eventually(t, func() bool {
		f := b.keys.filters.Load()
		return f.cur != nil && f.next == nil
	}, 10*time.Second, time.Millisecond)
}

// newKeyClaim is the request the tests claim new keys with.
var newKeyClaim = backend.ClaimRequest{Value: []byte("claim"), Lease: time.Minute, TTL: time.Hour, Volatile: true}

// completeKey claims the new key and completes it with value.
func completeKey(t *testing.T, b *Backend, key, value []byte) {
	t.Helper()
	ctx := context.Background()
	res, err := b.Claim(ctx, key, newKeyClaim)
	require.NoError(t, err)
	require.NotZero(t, res.Owner, "%s is new", key)
	require.NoError(t, b.Complete(ctx, key, res.Owner, value, time.Hour))
}

// Keys stored before Open are found once the filter is in use: the claim
// that skips reading is only for keys never stored.
func TestPresenceKnowsKeysFromBeforeOpen(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(Options{Dir: dir})
	require.NoError(t, err)
	const n = 2000
	for i := range n {
		completeKey(t, b, fmt.Appendf(nil, "k%d", i), []byte("done"))
	}
	require.NoError(t, b.close())

	b, err = Open(Options{Dir: dir})
	require.NoError(t, err)
	defer b.close()
	waitForKeyScan(t, b)
	for i := range n {
		res, err := b.Claim(context.Background(), fmt.Appendf(nil, "k%d", i), backend.ClaimRequest{Value: []byte("again"), Lease: time.Minute, TTL: time.Hour})
		require.NoError(t, err)
		require.True(t, res.Found, "key %d", i)
		require.Zero(t, res.Owner)
	}
	skipped := 0
	for i := range n {
		if !b.keys.mayHold(fmt.Appendf(nil, "new%d", i)) {
			skipped++
		}
	}
	assert.Greater(t, skipped, n*9/10, "new keys skip the read")
}

// Filters refilled while writers write (each time more keys were added than
// a filter was sized for) miss no key.
func TestPresenceRefillsMissNothing(t *testing.T) {
	const minFilterKeys = 500
	b, err := Open(Options{InMemory: true, FilterKeys: minFilterKeys})
	require.NoError(t, err)
	defer b.close()
	waitForKeyScan(t, b)
	first := b.keys.filters.Load().cur

	const writers, each = 8, 2500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				completeKey(t, b, fmt.Appendf(nil, "w%d-%d", w, i), []byte("done"))
			}
		})
	}
	wg.Wait()
	waitForKeyScan(t, b)
	assert.True(t, first != b.keys.filters.Load().cur, "refilled")
	assert.Greater(t, b.keys.filters.Load().cur.keys, int64(2*minFilterKeys), "sized for the keys stored")
	for w := range writers {
		for i := range each {
			k := fmt.Appendf(nil, "w%d-%d", w, i)
			require.True(t, b.keys.mayHold(k), "%s", k)
		}
	}
}

// mayHold reports whether key may be stored, as check does, without
// adding it.
func (p *presence) mayHold(key []byte) bool {
	f := p.filters.Load()
	if f == nil || f.cur == nil {
		return true
	}
	return f.cur.has(key)
}

// has reports whether all of key's bits are set.
func (f *bloom) has(key []byte) bool {
	block, p := f.probes(key)
	for range bloomProbes {
		if block[p>>6&7].Load()&(uint64(1)<<(p&63)) == 0 {
			return false
		}
		p >>= 9
	}
	return true
}
