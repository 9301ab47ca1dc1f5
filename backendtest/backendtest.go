// Package backendtest checks that a [backend.Backend] keeps the contract the
// store relies on, in the spirit of testing/slogtest: call [Run] from a
// test of the implementation.
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) backend.Backend {
//			return newMyBackend(t) // empty, or holding no key the suite uses
//		})
//	}
//
// The suite uses real time for leases and expiry (a backend's clock cannot
// be injected), so it takes a few seconds.
package backendtest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem/backend"
)

// Run runs the whole contract against backends made by newBackend, one
// per subtest. Run closes them.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, backend.Backend)
	}{
		{"ClaimNewKey", testClaimNewKey},
		{"ClaimHeldKey", testClaimHeldKey},
		{"Complete", testComplete},
		{"Release", testRelease},
		{"RenewAndTakeover", testRenewAndTakeover},
		{"LeaseLapses", testLeaseLapses},
		{"Stale", testStale},
		{"Volatile", testVolatile},
		{"Expiry", testExpiry},
		{"Delete", testDelete},
		{"Scan", testScan},
		{"Values", testValues},
		{"ClaimStorm", testClaimStorm},
		{"Capabilities", testCapabilities},
		{"Watch", testWatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := newBackend(t)
			t.Cleanup(func() { assert.NoError(t, be.Close()) })
			tt.fn(t, be)
		})
	}
}

// request is a claim request with the suite's defaults.
func request(value string) backend.ClaimRequest {
	return backend.ClaimRequest{Value: []byte(value), Lease: time.Minute, TTL: time.Hour}
}

// key makes a test key; the bytes before name are ones that key encodings
// (hash tags, glob patterns, separators) must survive.
func key(name string) []byte { return []byte("\x01k{*}\x00]?[\\" + name) }

func claim(t *testing.T, be backend.Backend, k []byte, req backend.ClaimRequest) backend.ClaimResult {
	t.Helper()
	res, err := be.Claim(context.Background(), k, req)
	require.NoError(t, err)
	return res
}

func get(t *testing.T, be backend.Backend, k []byte) (backend.Entry, bool) {
	t.Helper()
	e, found, err := be.Get(context.Background(), k)
	require.NoError(t, err)
	return e, found
}

// own claims k, which must be free, and returns the owner.
func own(t *testing.T, be backend.Backend, k []byte, req backend.ClaimRequest) uint64 {
	t.Helper()
	return ownToken(t, be, k, req).Owner
}

// ownToken claims k, which must be free, and returns the claim.
func ownToken(t *testing.T, be backend.Backend, k []byte, req backend.ClaimRequest) backend.ClaimResult {
	t.Helper()
	res := claim(t, be, k, req)
	require.NotZero(t, res.Owner, "a free key is claimed")
	require.NotZero(t, res.Token, "tokens are never 0")
	return res
}

// eventually polls cond every 10 ms until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testClaimNewKey(t *testing.T, be backend.Backend) {
	k := key("new")
	_, found := get(t, be, k)
	require.False(t, found)
	res := claim(t, be, k, request("claim"))
	assert.NotZero(t, res.Owner)
	assert.False(t, res.Found)
	e, found := get(t, be, k)
	require.True(t, found)
	assert.Equal(t, backend.Entry{Value: []byte("claim"), Owner: res.Owner}, e)
}

func testClaimHeldKey(t *testing.T, be backend.Backend) {
	k := key("held")
	owner := own(t, be, k, request("first"))
	for _, req := range []backend.ClaimRequest{
		request("second"),
		{Value: []byte("second"), Lease: time.Minute, TTL: time.Hour, Takeover: true},
		{Value: []byte("second"), Lease: time.Minute, TTL: time.Hour, Stale: []byte("first")},
	} {
		res := claim(t, be, k, req)
		assert.Zero(t, res.Owner, "a live claim is never replaced")
		assert.True(t, res.Found)
		assert.Equal(t, backend.Entry{Value: []byte("first"), Owner: owner}, res.Prev)
	}
}

func testComplete(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	k := key("complete")
	owner := own(t, be, k, request("claim"))
	assert.ErrorIs(t, be.Complete(ctx, k, owner+1, []byte("wrong"), time.Hour), backend.ErrLeaseLost)
	e, _ := get(t, be, k)
	assert.Equal(t, "claim", string(e.Value), "a refused completion changes nothing")

	require.NoError(t, be.Complete(ctx, k, owner, []byte("result"), time.Hour))
	e, found := get(t, be, k)
	require.True(t, found)
	assert.Equal(t, backend.Entry{Value: []byte("result")}, e, "finished: no owner")

	res := claim(t, be, k, backend.ClaimRequest{Value: []byte("again"), Lease: time.Minute, TTL: time.Hour, Takeover: true})
	assert.Zero(t, res.Owner, "a finished entry is never taken over")
	assert.Equal(t, backend.Entry{Value: []byte("result")}, res.Prev)
	assert.ErrorIs(t, be.Complete(ctx, k, owner, []byte("twice"), time.Hour), backend.ErrLeaseLost)
	assert.ErrorIs(t, be.Release(ctx, k, owner), backend.ErrLeaseLost)
	assert.ErrorIs(t, be.Renew(ctx, k, owner, time.Minute), backend.ErrLeaseLost)
	// A finished entry's owner is 0, and 0 owns nothing.
	assert.ErrorIs(t, be.Complete(ctx, k, 0, []byte("by nobody"), time.Hour), backend.ErrLeaseLost)
	assert.ErrorIs(t, be.Release(ctx, k, 0), backend.ErrLeaseLost)
	assert.ErrorIs(t, be.Renew(ctx, k, 0, time.Minute), backend.ErrLeaseLost)
	e, _ = get(t, be, k)
	assert.Equal(t, "result", string(e.Value))
	assert.ErrorIs(t, be.Complete(ctx, key("absent"), owner, []byte("x"), time.Hour), backend.ErrLeaseLost)
}

func testRelease(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	for _, volatile := range []bool{false, true} {
		k := key(fmt.Sprint("release-", volatile))
		req := request("claim")
		req.Volatile = volatile
		first := ownToken(t, be, k, req)
		owner := first.Owner
		assert.ErrorIs(t, be.Release(ctx, k, owner+1), backend.ErrLeaseLost)
		require.NoError(t, be.Release(ctx, k, owner))
		_, found := get(t, be, k)
		assert.False(t, found, "a released key is free")
		next := ownToken(t, be, k, req)
		assert.NotEqual(t, owner, next.Owner)
		assert.Greater(t, next.Token, first.Token, "the next owner's token is greater")
		assert.ErrorIs(t, be.Release(ctx, k, owner), backend.ErrLeaseLost, "the old owner holds nothing")
	}
}

func testRenewAndTakeover(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	k := key("takeover")
	first := ownToken(t, be, k, request("first"))
	owner := first.Owner
	assert.ErrorIs(t, be.Renew(ctx, k, owner+1, time.Minute), backend.ErrLeaseLost)
	require.NoError(t, be.Renew(ctx, k, owner, time.Minute))
	e, _ := get(t, be, k)
	assert.False(t, e.Lapsed)

	require.NoError(t, be.Renew(ctx, k, owner, 0), "lease 0 ends the lease")
	e, _ = get(t, be, k)
	assert.True(t, e.Lapsed)
	assert.Equal(t, owner, e.Owner)

	res := claim(t, be, k, request("second"))
	assert.Zero(t, res.Owner, "a lapsed claim is replaced only with Takeover")
	assert.True(t, res.Prev.Lapsed)

	take := request("second")
	take.Takeover = true
	res = claim(t, be, k, take)
	require.NotZero(t, res.Owner)
	assert.NotEqual(t, owner, res.Owner)
	assert.Greater(t, res.Token, first.Token, "tokens increase from owner to owner")
	assert.True(t, res.Found)
	assert.Equal(t, backend.Entry{Value: []byte("first"), Owner: owner, Lapsed: true}, res.Prev, "the orphan it replaced")

	// Fencing: the first owner, back from a pause, can change nothing.
	assert.ErrorIs(t, be.Complete(ctx, k, owner, []byte("stale"), time.Hour), backend.ErrLeaseLost)
	assert.ErrorIs(t, be.Release(ctx, k, owner), backend.ErrLeaseLost)
	assert.ErrorIs(t, be.Renew(ctx, k, owner, time.Minute), backend.ErrLeaseLost)
	e, _ = get(t, be, k)
	assert.Equal(t, backend.Entry{Value: []byte("second"), Owner: res.Owner}, e)
	require.NoError(t, be.Complete(ctx, k, res.Owner, []byte("result"), time.Hour))
	e, _ = get(t, be, k)
	assert.Equal(t, "result", string(e.Value))
}

// testLeaseLapses checks that a claim nobody renews lapses after its
// lease, or, on a [backend.Exclusive] backend, that it never does.
func testLeaseLapses(t *testing.T, be backend.Backend) {
	if _, ok := be.(backend.Exclusive); ok {
		testHeldClaimsLast(t, be)
		return
	}
	ctx := context.Background()
	k := key("lapses")
	req := request("claim")
	req.Lease = 50 * time.Millisecond
	owner := own(t, be, k, req)
	eventually(t, "an unrenewed lease lapses", func() bool {
		e, _ := get(t, be, k)
		return e.Lapsed
	})
	require.NoError(t, be.Renew(ctx, k, owner, time.Minute), "an owner nobody replaced may renew")
	e, _ := get(t, be, k)
	assert.False(t, e.Lapsed)

	k = key("lapsed-completes")
	owner = own(t, be, k, req)
	eventually(t, "an unrenewed lease lapses", func() bool {
		e, _ := get(t, be, k)
		return e.Lapsed
	})
	require.NoError(t, be.Complete(ctx, k, owner, []byte("late"), time.Hour), "a lapsed owner nobody replaced may complete")
	e, _ = get(t, be, k)
	assert.Equal(t, backend.Entry{Value: []byte("late")}, e)
}

// testHeldClaimsLast checks that the claims of an exclusive backend stay
// held past their lease and their TTL, however long the work runs, until
// their owner ends them.
func testHeldClaimsLast(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	claims := map[string]backend.ClaimRequest{}
	for _, volatile := range []bool{false, true} {
		req := request("claim")
		req.Lease, req.TTL, req.Volatile = 20*time.Millisecond, 50*time.Millisecond, volatile
		claims[fmt.Sprint("held-volatile=", volatile)] = req
	}
	owners := map[string]uint64{}
	for name, req := range claims {
		owners[name] = own(t, be, key(name), req)
	}
	time.Sleep(200 * time.Millisecond) // past every lease and TTL
	for name, req := range claims {
		k := key(name)
		e, found := get(t, be, k)
		require.True(t, found, "%s: a held claim does not expire", name)
		assert.Equal(t, backend.Entry{Value: []byte("claim"), Owner: owners[name]}, e, "%s: nor lapse", name)
		req.Takeover, req.Stale = true, []byte("claim")
		res := claim(t, be, k, req)
		assert.Zero(t, res.Owner, "%s: a held claim is never taken over", name)
		require.NoError(t, be.Complete(ctx, k, owners[name], []byte("late"), time.Hour), name)
		e, _ = get(t, be, k)
		assert.Equal(t, backend.Entry{Value: []byte("late")}, e, name)
	}
}

func testStale(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	k := key("stale")
	owner := own(t, be, k, request("claim"))
	require.NoError(t, be.Complete(ctx, k, owner, []byte("old"), time.Hour))

	req := request("new")
	req.Stale = []byte("other")
	res := claim(t, be, k, req)
	assert.Zero(t, res.Owner, "Stale must match the entry exactly")

	req.Stale = []byte("old")
	res = claim(t, be, k, req)
	require.NotZero(t, res.Owner)
	assert.Equal(t, backend.Entry{Value: []byte("old")}, res.Prev)
	e, _ := get(t, be, k)
	assert.Equal(t, backend.Entry{Value: []byte("new"), Owner: res.Owner}, e)

	require.NoError(t, be.Renew(ctx, k, res.Owner, 0))
	req = request("newer")
	req.Stale = []byte("new")
	res = claim(t, be, k, req)
	assert.NotZero(t, res.Owner, "a lapsed entry is replaced when Stale matches")
}

func testVolatile(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	k := key("volatile")
	req := request("claim")
	req.Volatile = true
	owner := own(t, be, k, req)
	res := claim(t, be, k, req)
	assert.Zero(t, res.Owner, "a volatile claim excludes other claimers all the same")
	assert.Equal(t, owner, res.Prev.Owner)
	require.NoError(t, be.Complete(ctx, k, owner, []byte("result"), time.Hour))
	e, _ := get(t, be, k)
	assert.Equal(t, backend.Entry{Value: []byte("result")}, e)
}

// testExpiry checks that a finished entry and a claim nobody renews are
// gone after their TTL, or, on a [backend.Exclusive] backend, that entries
// stay until they are deleted.
func testExpiry(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	done, claimed := key("expires-done"), key("expires-claim")
	owner := own(t, be, done, request("claim"))
	require.NoError(t, be.Complete(ctx, done, owner, []byte("result"), 50*time.Millisecond))
	if _, ok := be.(backend.Exclusive); ok {
		time.Sleep(100 * time.Millisecond)
		e, found := get(t, be, done)
		require.True(t, found, "an exclusive backend keeps entries past their TTL: the store's clock decides")
		assert.Equal(t, backend.Entry{Value: []byte("result")}, e)
		return
	}
	req := request("claim")
	req.Lease, req.TTL = 500*time.Millisecond, time.Second
	own(t, be, claimed, req)
	for _, k := range [][]byte{done, claimed} {
		eventually(t, "an entry is gone after its TTL", func() bool {
			_, found := get(t, be, k)
			return !found
		})
		var seen int
		require.NoError(t, be.Scan(ctx, k, func([]byte, backend.Entry) error { seen++; return nil }))
		assert.Zero(t, seen, "Scan skips expired entries")
		assert.NotZero(t, own(t, be, k, request("again")), "an expired key is free")
	}
}

func testDelete(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	done, held := key("delete-done"), key("delete-held")
	owner := own(t, be, done, request("claim"))
	require.NoError(t, be.Complete(ctx, done, owner, []byte("result"), time.Hour))
	owner = own(t, be, held, request("claim"))
	for _, k := range [][]byte{done, held} {
		require.NoError(t, be.Delete(ctx, k))
		_, found := get(t, be, k)
		assert.False(t, found)
	}
	assert.ErrorIs(t, be.Complete(ctx, held, owner, []byte("late"), time.Hour), backend.ErrLeaseLost,
		"the owner of a deleted claim holds nothing")
	require.NoError(t, be.Delete(ctx, key("delete-absent")), "deleting an absent key is not an error")
}

func testScan(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	want := map[string]string{}
	for i := range 300 {
		k := append(key("scan-a"), fmt.Sprint(i)...)
		owner := own(t, be, k, request(fmt.Sprint("claim ", i)))
		if i%3 != 0 {
			require.NoError(t, be.Complete(ctx, k, owner, []byte(fmt.Sprint("value ", i)), time.Hour))
			want[string(k)] = fmt.Sprint("value ", i)
		} else {
			want[string(k)] = fmt.Sprint("claim ", i)
		}
	}
	for i := range 10 {
		own(t, be, append(key("scan-b"), fmt.Sprint(i)...), request("other"))
	}
	got := map[string]string{}
	err := be.Scan(ctx, key("scan-a"), func(k []byte, e backend.Entry) error {
		got[string(k)] = string(e.Value)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, want, got, "every entry under the prefix, and only those")

	stop := fmt.Errorf("stop")
	n := 0
	err = be.Scan(ctx, key("scan-"), func([]byte, backend.Entry) error {
		n++
		return stop
	})
	assert.ErrorIs(t, err, stop, "Scan returns fn's error")
	assert.Equal(t, 1, n, "and stops at it")
}

func testValues(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 900<<6) // 900 KiB
	for name, v := range map[string][]byte{"empty": {}, "bytes": all, "big": big} {
		k := key("value-" + name)
		req := request("")
		req.Value = v
		owner := own(t, be, k, req)
		e, _ := get(t, be, k)
		assert.True(t, bytes.Equal(v, e.Value), "%s claim value", name)
		require.NoError(t, be.Complete(ctx, k, owner, v, time.Hour))
		e, _ = get(t, be, k)
		assert.True(t, bytes.Equal(v, e.Value), "%s result", name)
	}
	assert.NotZero(t, own(t, be, key("a"), request("x")))
	res := claim(t, be, key("a"), request("y"))
	v := res.Prev.Value
	v[0] = 'z' // returned slices belong to the caller
	e, _ := get(t, be, key("a"))
	assert.Equal(t, "x", string(e.Value))
}

// testClaimStorm has many goroutines claim the same keys at once: each key
// gets exactly one owner and one completion, whatever the interleaving,
// also when owners release and the others try again.
func testClaimStorm(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	const keys, workers = 20, 16
	for i := range keys {
		k := key(fmt.Sprint("storm-", i))
		var (
			mu          sync.Mutex
			tokens      []uint64
			completions int
			wg          sync.WaitGroup
		)
		start := make(chan struct{})
		for w := range workers {
			wg.Go(func() {
				<-start
				req := request(fmt.Sprint("worker ", w))
				req.Volatile = w%2 == 0
				for {
					res, err := be.Claim(ctx, k, req)
					if !assert.NoError(t, err) {
						return
					}
					if res.Owner == 0 {
						if res.Prev.Owner == 0 {
							return // finished
						}
						time.Sleep(time.Millisecond)
						continue
					}
					mu.Lock()
					tokens = append(tokens, res.Token)
					n := len(tokens)
					mu.Unlock()
					if n < 3 { // the first owners give up, the third completes
						assert.NoError(t, be.Release(ctx, k, res.Owner))
						continue
					}
					if assert.NoError(t, be.Complete(ctx, k, res.Owner, []byte("done"), time.Hour)) {
						mu.Lock()
						completions++
						mu.Unlock()
					}
					return
				}
			})
		}
		close(start)
		wg.Wait()
		assert.Equal(t, 1, completions, "key %d: one completion", i)
		assert.Len(t, tokens, 3, "key %d: one owner at a time", i)
		assert.True(t, slices.IsSorted(tokens), "key %d: tokens increase: %v", i, tokens)
		assert.NotContains(t, tokens, uint64(0), "key %d: tokens are never 0", i)
		e, _ := get(t, be, k)
		assert.Equal(t, backend.Entry{Value: []byte("done")}, e)
	}
}

// testCapabilities checks the optional capabilities the backend has: an
// Exclusive one numbers its epochs from 1; a Sweeper walks every entry
// under a prefix in key order, a batch at a time, and deletes a batch; a
// DiskUser and a WriteGuard answer; a ValueLimit stores its longest value
// and refuses a longer one alone.
func testCapabilities(t *testing.T, be backend.Backend) {
	ctx := context.Background()
	if ex, ok := be.(backend.Exclusive); ok {
		assert.Positive(t, ex.Epoch(), "epochs count from 1")
	}
	if g, ok := be.(backend.WriteGuard); ok {
		assert.NoError(t, g.AllowWrite(true), "a healthy store allows writes")
	}
	if d, ok := be.(backend.DiskUser); ok {
		assert.GreaterOrEqual(t, d.DiskBytes(), int64(0))
	}
	if vl, ok := be.(backend.ValueLimit); ok {
		// The longest value is stored; a longer one is refused for its
		// call alone.
		longest := bytes.Repeat([]byte("v"), vl.MaxValue())
		k := key("longest")
		req := request("")
		req.Value = longest // a claim's value too
		owner := own(t, be, k, req)
		assert.Error(t, be.Complete(ctx, k, owner, append(longest, 'v'), time.Hour), "a value over MaxValue")
		require.NoError(t, be.Complete(ctx, k, owner, longest, time.Hour))
		e, _ := get(t, be, k)
		assert.True(t, bytes.Equal(longest, e.Value), "the longest value")
		assert.NotZero(t, own(t, be, key("after-longest"), request("")), "the backend goes on")
	}
	sw, ok := be.(backend.Sweeper)
	if !ok {
		return
	}
	prefix := key("sweep-")
	var want []string
	for i := range 10 {
		k := append(bytes.Clone(prefix), byte('a'+i))
		owner := own(t, be, k, request("claim"))
		if i%2 == 0 {
			require.NoError(t, be.Complete(ctx, k, owner, []byte(fmt.Sprint("v", i)), time.Hour))
		}
		want = append(want, string(k))
	}
	_ = own(t, be, key("other"), request("claim")) // outside the prefix
	var seen []string
	values := map[string]string{}
	var next []byte = prefix
	for batches := 0; next != nil; batches++ {
		require.Less(t, batches, 10, "a sweep in batches of 3 ends")
		var err error
		next, err = sw.Sweep(ctx, prefix, next, 3, func(k, v []byte) error {
			seen = append(seen, string(k))
			values[string(k)] = string(v)
			return nil
		})
		require.NoError(t, err)
	}
	assert.Equal(t, want, seen, "every entry under the prefix, once, in key order")
	assert.Equal(t, "v0", values[want[0]], "a finished entry's value")
	assert.Equal(t, "claim", values[want[1]], "an in-progress entry's value")
	require.NoError(t, sw.DeleteAll(ctx, [][]byte{[]byte(want[0]), []byte(want[2])}))
	for i, k := range want[:3] {
		_, found := get(t, be, []byte(k))
		assert.Equal(t, i == 1, found, "%q", k)
	}
}

// testWatch checks a Watcher: a watch of an in-progress key is woken by
// its completion and by its release (by the backend's own signal: the
// suite waits far longer than the store's polling would), and a watch of
// a finished or absent key at once. (A watch may also be woken early.)
func testWatch(t *testing.T, be backend.Backend) {
	w, ok := be.(backend.Watcher)
	if !ok {
		t.Skip("not a Watcher")
	}
	ctx := context.Background()
	woken := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(10 * time.Second):
			return false
		}
	}
	for _, end := range []string{"complete", "release"} {
		k := key("watch-" + end)
		owner := own(t, be, k, request("claim"))
		ch, stop, err := w.Watch(ctx, k)
		require.NoError(t, err, end)
		if end == "complete" {
			require.NoError(t, be.Complete(ctx, k, owner, []byte("v"), time.Hour))
		} else {
			require.NoError(t, be.Release(ctx, k, owner))
		}
		assert.True(t, woken(ch), "%s: the watch is woken", end)
		stop()
	}
	finished := key("watch-finished")
	owner := own(t, be, finished, request("claim"))
	require.NoError(t, be.Complete(ctx, finished, owner, []byte("v"), time.Hour))
	for _, k := range [][]byte{finished, key("watch-absent")} {
		ch, stop, err := w.Watch(ctx, k)
		require.NoError(t, err)
		assert.True(t, woken(ch), "%q: a key not in progress wakes its watch", k)
		stop()
	}
}
