package idem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDoRunsOnceAndReplays(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{})
	sc := scopeTest(t, st, "payments", ScopeOptions{})

	runs := 0
	first, err := sc.Do(ctx, "k1", []byte("fp"), value(&runs, "charged"))
	require.NoError(t, err)
	assert.Equal(t, "charged", string(first.Value))
	assert.False(t, first.Replayed)

	second, err := sc.Do(ctx, "k1", []byte("fp"), value(&runs, "charged again"))
	require.NoError(t, err)
	assert.Equal(t, "charged", string(second.Value))
	assert.True(t, second.Replayed)
	assert.Equal(t, 1, runs)
	assert.Equal(t, first.ExpiresAt, second.ExpiresAt)

	// The replayed value belongs to the caller.
	second.Value[0] = 'X'
	third, err := sc.Do(ctx, "k1", nil, value(&runs, "no"))
	require.NoError(t, err)
	assert.Equal(t, "charged", string(third.Value))

	s := st.Stats()
	assert.Equal(t, uint64(1), s.Claims)
	assert.Equal(t, uint64(1), s.Completed)
	assert.Equal(t, uint64(2), s.Replays)
	assert.Equal(t, int64(0), s.InFlight)
}

func TestEmptyValueIsAResult(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{})
	runs := 0
	_, err := sc.Do(ctx, "k", nil, value(&runs, ""))
	require.NoError(t, err)
	res, err := sc.Do(ctx, "k", nil, value(&runs, "other"))
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Empty(t, res.Value)
	assert.Equal(t, 1, runs)
}

func TestFingerprintMismatch(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{})
	sc := scopeTest(t, st, "payments", ScopeOptions{})
	runs := 0
	_, err := sc.Do(ctx, "k", []byte("a"), value(&runs, "v"))
	require.NoError(t, err)

	_, err = sc.Do(ctx, "k", []byte("b"), value(&runs, "v"))
	assert.ErrorIs(t, err, ErrFingerprintMismatch)
	_, err = sc.Claim(ctx, "k", []byte("b"))
	assert.ErrorIs(t, err, ErrFingerprintMismatch)
	assert.Equal(t, 1, runs)
	assert.Equal(t, uint64(2), st.Stats().Mismatches)

	// nil skips the check; the record is untouched by the mismatches.
	res, err := sc.Do(ctx, "k", nil, value(&runs, "v"))
	require.NoError(t, err)
	assert.Equal(t, "v", string(res.Value))
	res, err = sc.Do(ctx, "k", []byte("a"), value(&runs, "v"))
	require.NoError(t, err)
	assert.True(t, res.Replayed)
}

func TestFingerprintMismatchWhileInProgress(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{})
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := sc.Do(ctx, "k", []byte("a"), func(context.Context) ([]byte, error) {
			close(started)
			<-release
			return []byte("v"), nil
		})
		done <- err
	}()
	<-started
	_, err := sc.Do(ctx, "k", []byte("b"), value(new(int), "x"))
	assert.ErrorIs(t, err, ErrFingerprintMismatch, "mismatch is reported before in-progress")
	_, err = sc.Claim(ctx, "k", []byte("a"))
	assert.ErrorIs(t, err, ErrInProgress)
	close(release)
	require.NoError(t, <-done)
}

func TestCoalescing(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{})
	sc := scopeTest(t, st, "s", ScopeOptions{})
	const n = 500
	var runs atomic.Int32
	gate := make(chan struct{})
	results := make([]Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-gate
			results[i], errs[i] = sc.Do(ctx, "hot", []byte("fp"), func(context.Context) ([]byte, error) {
				runs.Add(1)
				time.Sleep(20 * time.Millisecond) // let the duplicates pile up
				return []byte("once"), nil
			})
		})
	}
	close(gate)
	wg.Wait()
	assert.Equal(t, int32(1), runs.Load())
	fresh := 0
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, "once", string(results[i].Value))
		if !results[i].Replayed {
			fresh++
		}
	}
	assert.Equal(t, 1, fresh)
	assert.Positive(t, st.Stats().Coalesced)
}

func TestManyKeysConcurrently(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{Shards: 4}), "s", ScopeOptions{})
	const keys, callers = 200, 8
	var runs [keys]atomic.Int32
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for i := range keys {
				k := (i + g*31) % keys
				res, err := sc.Do(ctx, fmt.Sprint("key-", k), nil, func(context.Context) ([]byte, error) {
					runs[k].Add(1)
					return []byte(fmt.Sprint("v", k)), nil
				})
				if assert.NoError(t, err) {
					assert.Equal(t, fmt.Sprint("v", k), string(res.Value))
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		assert.Equal(t, int32(1), runs[k].Load(), "key %d", k)
	}
}

func TestWaiterContextEndsWithoutDisturbingOwner(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{})
	started, release := make(chan struct{}), make(chan struct{})
	owner := make(chan Result)
	go func() {
		res, err := sc.Do(ctx, "k", nil, func(ctx context.Context) ([]byte, error) {
			close(started)
			<-release
			return []byte("v"), ctx.Err() // the owner's ctx must still be live
		})
		assert.NoError(t, err)
		owner <- res
	}()
	<-started

	wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	runs := 0
	_, err := sc.Do(wctx, "k", nil, value(&runs, "dup"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, ErrInProgress)

	close(release)
	assert.Equal(t, "v", string((<-owner).Value))
	res, err := sc.Do(ctx, "k", nil, value(&runs, "dup"))
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, "v", string(res.Value))
	assert.Zero(t, runs)
}

func TestPlainErrorReleases(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{InMemory: true})
	sc := scopeTest(t, st, "s", ScopeOptions{})
	boom := errors.New("card network timeout")
	_, err := sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { return nil, boom })
	assert.ErrorIs(t, err, boom)
	runs := 0
	res, err := sc.Do(ctx, "k", nil, value(&runs, "ok"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)
	assert.Equal(t, 1, runs)
	assert.Equal(t, uint64(1), st.Stats().Released)
}

func TestErrorWakesWaitersWhoRunAgain(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{})
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) {
			close(started)
			<-release
			return nil, errors.New("transient")
		})
	}()
	<-started
	done := make(chan Result)
	go func() {
		res, err := sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { return []byte("second"), nil })
		assert.NoError(t, err)
		done <- res
	}()
	close(release)
	res := <-done
	assert.Equal(t, "second", string(res.Value))
	assert.False(t, res.Replayed)
}

func TestPanicReleasesAndPropagates(t *testing.T) {
	ctx := testCtx(t)
	for _, policy := range []OrphanPolicy{OrphanRerun, OrphanReport} {
		t.Run(policy.String(), func(t *testing.T) {
			st := openTest(t, Options{})
			sc := scopeTest(t, st, "s", ScopeOptions{Orphans: policy})
			assert.PanicsWithValue(t, "kaboom", func() {
				_, _ = sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { panic("kaboom") })
			})
			runs := 0
			res, err := sc.Do(ctx, "k", nil, value(&runs, "ok"))
			require.NoError(t, err)
			assert.False(t, res.Replayed)
			assert.Equal(t, 1, runs)
			assert.Zero(t, st.Stats().InFlight)
		})
	}
}

func TestPermanentFailureIsStoredAndReplayed(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	st := openTest(t, Options{Now: clock.Now})
	sc := scopeTest(t, st, "s", ScopeOptions{TTL: time.Hour, FailureTTL: time.Minute})
	declined := errors.New("card declined")
	_, err := sc.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { return nil, Permanent(declined) })
	assert.ErrorIs(t, err, declined, "the first caller gets its own error")
	assert.ErrorIs(t, err, ErrPermanent)

	runs := 0
	res, err := sc.Do(ctx, "k", nil, value(&runs, "ok"))
	var fe *FailureError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "card declined", fe.Message)
	assert.EqualError(t, err, "card declined")
	assert.ErrorIs(t, err, ErrPermanent)
	assert.True(t, res.Replayed)
	assert.Zero(t, runs)
	assert.Nil(t, Permanent(nil))

	clock.Advance(time.Minute) // FailureTTL, not TTL
	res, err = sc.Do(ctx, "k", nil, value(&runs, "ok"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)
	assert.Equal(t, 1, runs)
}

func TestValueTooLarge(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{}), "s", ScopeOptions{MaxValueSize: 8})
	runs := 0
	res, err := sc.Do(ctx, "k", nil, value(&runs, "123456789"))
	require.NoError(t, err, "the first caller still gets its value")
	assert.Equal(t, "123456789", string(res.Value))

	_, err = sc.Do(ctx, "k", nil, value(&runs, "x"))
	assert.ErrorIs(t, err, ErrValueTooLarge)
	assert.ErrorContains(t, err, "9 bytes")
	assert.Equal(t, 1, runs, "never runs again")

	res, err = sc.Do(ctx, "exact", nil, value(&runs, "12345678"))
	require.NoError(t, err)
	res, err = sc.Do(ctx, "exact", nil, value(&runs, "x"))
	require.NoError(t, err)
	assert.Equal(t, "12345678", string(res.Value))
}

func TestExpiryUsesExactDeadline(t *testing.T) {
	ctx := testCtx(t)
	clock := newFakeClock()
	sc := scopeTest(t, openTest(t, Options{Now: clock.Now}), "s", ScopeOptions{TTL: 1500 * time.Millisecond})
	runs := 0
	first, err := sc.Do(ctx, "k", nil, value(&runs, "v1"))
	require.NoError(t, err)
	assert.WithinDuration(t, clock.Now().Add(1500*time.Millisecond), first.ExpiresAt, 0)

	clock.Advance(1499 * time.Millisecond)
	res, err := sc.Do(ctx, "k", nil, value(&runs, "v2"))
	require.NoError(t, err)
	assert.Equal(t, "v1", string(res.Value), "not expired a millisecond early")

	clock.Advance(time.Millisecond)
	res, err = sc.Do(ctx, "k", nil, value(&runs, "v2"))
	require.NoError(t, err)
	assert.Equal(t, "v2", string(res.Value), "expired at the deadline")
	assert.False(t, res.Replayed)
	assert.Equal(t, 2, runs)
}

func TestTenantIsolation(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{}), "orders", ScopeOptions{})
	alice, bob := sc.Tenant("alice"), sc.Tenant("bob")
	runs := 0
	a, err := alice.Do(ctx, "k", []byte("fa"), value(&runs, "alice's"))
	require.NoError(t, err)
	b, err := bob.Do(ctx, "k", []byte("fb"), value(&runs, "bob's"))
	require.NoError(t, err)
	plain, err := sc.Do(ctx, "k", nil, value(&runs, "scope's"))
	require.NoError(t, err)
	assert.False(t, a.Replayed || b.Replayed || plain.Replayed)
	assert.Equal(t, 3, runs)

	again, err := sc.Tenant("alice").Do(ctx, "k", []byte("fa"), value(&runs, "x"))
	require.NoError(t, err)
	assert.Equal(t, "alice's", string(again.Value))
	assert.Equal(t, "alice", alice.TenantID())
	assert.Equal(t, "bob", alice.Tenant("bob").TenantID())
	assert.Equal(t, "orders", bob.Name())
}

func TestScopesDoNotShareKeys(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{InMemory: true})
	// "a" + tenant "b|c" must not meet "a|b" + tenant "c", whatever bytes.
	one := scopeTest(t, st, "a", ScopeOptions{}).Tenant("b\x01c")
	two := scopeTest(t, st, "a.b", ScopeOptions{}).Tenant("c")
	runs := 0
	_, err := one.Do(ctx, "k", nil, value(&runs, "1"))
	require.NoError(t, err)
	res, err := two.Do(ctx, "k", nil, value(&runs, "2"))
	require.NoError(t, err)
	assert.Equal(t, "2", string(res.Value))
	assert.Equal(t, 2, runs)
}

func TestClaimCompleteAndRelease(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{})
	sc := scopeTest(t, st, "s", ScopeOptions{})

	cl, err := sc.Claim(ctx, "k", []byte("fp"))
	require.NoError(t, err)
	require.True(t, cl.Owned())
	_, err = cl.Result()
	assert.ErrorIs(t, err, ErrInProgress)
	_, err = sc.Claim(ctx, "k", []byte("fp"))
	assert.ErrorIs(t, err, ErrInProgress)
	assert.Equal(t, int64(1), st.Stats().InFlight)

	require.NoError(t, cl.Release(ctx))
	require.NoError(t, cl.Release(ctx), "release is safe to repeat")
	assert.ErrorIs(t, cl.Complete(ctx, []byte("late")), ErrClaimFinished)

	cl, err = sc.Claim(ctx, "k", []byte("fp"))
	require.NoError(t, err)
	require.True(t, cl.Owned())
	v := []byte("result")
	require.NoError(t, cl.Complete(ctx, v))
	v[0] = 'X' // the store copied it
	assert.ErrorIs(t, cl.Complete(ctx, v), ErrClaimFinished)
	assert.ErrorIs(t, cl.Fail(ctx, errors.New("x")), ErrClaimFinished)
	require.NoError(t, cl.Release(ctx), "release after complete is a no-op")

	again, err := sc.Claim(ctx, "k", []byte("fp"))
	require.NoError(t, err)
	assert.False(t, again.Owned())
	res, err := again.Result()
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, "result", string(res.Value))
	assert.Zero(t, st.Stats().InFlight)
}

func TestClaimFail(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{MaxValueSize: 4})
	cl, err := sc.Claim(ctx, "k", nil)
	require.NoError(t, err)
	assert.Error(t, cl.Fail(ctx, nil))
	require.NoError(t, cl.Fail(ctx, errors.New("declined")))
	again, err := sc.Claim(ctx, "k", nil)
	require.NoError(t, err)
	_, err = again.Result()
	assert.EqualError(t, err, "decl", "the message is cut to MaxValueSize")
}

func TestCompleteWakesWaitingDo(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{})
	cl, err := sc.Claim(ctx, "k", nil)
	require.NoError(t, err)
	got := make(chan Result)
	go func() {
		res, err := sc.Do(ctx, "k", nil, value(new(int), "dup"))
		assert.NoError(t, err)
		got <- res
	}()
	require.Eventually(t, func() bool { return sc.store.Stats().Coalesced == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, cl.Complete(ctx, []byte("claimed")))
	res := <-got
	assert.True(t, res.Replayed)
	assert.Equal(t, "claimed", string(res.Value))
}

func TestDoHonoursEndedContextBeforeClaiming(t *testing.T) {
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	runs := 0
	_, err := sc.Do(ctx, "k", nil, value(&runs, "v"))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, runs)
}

func TestInvalidInput(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{InMemory: true})
	sc := scopeTest(t, st, "s", ScopeOptions{})
	fn := value(new(int), "v")

	for _, tc := range []struct {
		name string
		sc   *Scope
		key  string
		fp   []byte
		want error
	}{
		{"empty key", sc, "", nil, ErrInvalidKey},
		{"long key", sc, strings.Repeat("k", MaxKeyLen+1), nil, ErrInvalidKey},
		{"long fingerprint", sc, "k", make([]byte, MaxFingerprintLen+1), ErrInvalidKey},
		{"empty tenant", sc.Tenant(""), "k", nil, ErrInvalidScope},
		{"long tenant", sc.Tenant(strings.Repeat("t", MaxTenantLen+1)), "k", nil, ErrInvalidScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.sc.Do(ctx, tc.key, tc.fp, fn)
			assert.ErrorIs(t, err, tc.want)
			_, err = tc.sc.Claim(ctx, tc.key, tc.fp)
			assert.ErrorIs(t, err, tc.want)
		})
	}
	t.Run("longest parts are fine", func(t *testing.T) {
		long := sc.Tenant(strings.Repeat("t", MaxTenantLen))
		_, err := long.Do(ctx, strings.Repeat("k", MaxKeyLen), make([]byte, MaxFingerprintLen), fn)
		assert.NoError(t, err)
	})
	t.Run("nil function", func(t *testing.T) {
		_, err := sc.Do(ctx, "k", nil, nil)
		assert.Error(t, err)
	})
	t.Run("nil context", func(t *testing.T) {
		var nilCtx context.Context // a mistake the compiler lets through
		runs := 0
		_, err := sc.Do(nilCtx, "nil-ctx", nil, value(&runs, "v"))
		assert.ErrorIs(t, err, errNilContext)
		assert.Zero(t, runs)
		_, err = sc.Claim(nilCtx, "nil-ctx", nil)
		assert.ErrorIs(t, err, errNilContext)
		_, err = st.GC(nilCtx)
		assert.ErrorIs(t, err, errNilContext)
		assert.ErrorIs(t, st.Records(nilCtx, RecordFilter{}, func(RecordInfo) error { return nil }), errNilContext)
		_, err = st.Lookup(nilCtx, "s", "", "k")
		assert.ErrorIs(t, err, errNilContext)
		assert.ErrorIs(t, st.Delete(nilCtx, "s", "", "k"), errNilContext)

		cl, err := sc.Claim(ctx, "nil-ctx", nil)
		require.NoError(t, err)
		assert.ErrorIs(t, cl.Complete(nilCtx, []byte("v")), errNilContext)
		assert.ErrorIs(t, cl.Fail(nilCtx, errors.New("no")), errNilContext)
		assert.ErrorIs(t, cl.Release(nilCtx), errNilContext)
		require.NoError(t, cl.Complete(ctx, []byte("v")), "the claim is still owned")
	})
	for _, name := range []string{"", "Payments", "a b", "a/b", "ü", strings.Repeat("s", MaxScopeLen+1)} {
		t.Run("scope name "+name, func(t *testing.T) {
			_, err := st.Scope(name, ScopeOptions{})
			assert.ErrorIs(t, err, ErrInvalidScope)
		})
	}
	for name, o := range map[string]ScopeOptions{
		"negative TTL":         {TTL: -1},
		"negative FailureTTL":  {FailureTTL: -1},
		"negative OrphanTTL":   {OrphanTTL: -1},
		"unknown policy":       {Orphans: 7},
		"negative value limit": {MaxValueSize: -1},
		"huge value limit":     {MaxValueSize: maxValueSizeLimit + 1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := st.Scope("ok", o)
			assert.ErrorIs(t, err, ErrInvalidScope)
		})
	}
	t.Run("same scope, other options", func(t *testing.T) {
		a, err := st.Scope("twice", ScopeOptions{TTL: time.Hour})
		require.NoError(t, err)
		b, err := st.Scope("twice", ScopeOptions{TTL: time.Hour})
		require.NoError(t, err)
		assert.Same(t, a, b)
		_, err = st.Scope("twice", ScopeOptions{TTL: time.Minute})
		assert.ErrorIs(t, err, ErrInvalidScope)
	})
}

func TestDoAppend(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true}), "s", ScopeOptions{})
	first, err := sc.DoAppend(ctx, []byte("ignored:"), "k", nil, value(new(int), "v1"))
	require.NoError(t, err)
	assert.Equal(t, "v1", string(first.Value), "a first execution returns fn's value")
	dst := make([]byte, 0, 64)
	dst = append(dst, "prefix:"...)
	res, err := sc.DoAppend(ctx, dst, "k", nil, value(new(int), "v2"))
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, "prefix:v1", string(res.Value), "a replay is appended to dst")
	assert.Equal(t, &dst[:1][0], &res.Value[0], "in dst's own array")

	_, err = sc.Do(ctx, "empty", nil, value(new(int), ""))
	require.NoError(t, err)
	res, err = sc.DoAppend(ctx, nil, "empty", nil, value(new(int), "x"))
	require.NoError(t, err)
	assert.NotNil(t, res.Value, "an empty result is still a result")
	assert.Empty(t, res.Value)
}

// TestCachedReplayAllocatesNothing replays a cached key with DoAppend into
// a reused buffer, the key converted from bytes at each call as a consumer
// of message headers would: nothing is allocated, the key's conversion
// included, since no call keeps a reference to its key.
func TestCachedReplayAllocatesNothing(t *testing.T) {
	ctx := testCtx(t)
	sc := scopeTest(t, openTest(t, Options{InMemory: true, GCInterval: -1}), "s", ScopeOptions{})
	key := []byte("order-1001")
	for range 2 { // the second call reads the record and caches it
		_, err := sc.Do(ctx, string(key), nil, value(new(int), "v"))
		require.NoError(t, err)
	}
	dst := make([]byte, 0, 64)
	fn := value(new(int), "again")
	allocs := testing.AllocsPerRun(100, func() {
		res, err := sc.DoAppend(ctx, dst[:0], string(key), nil, fn)
		if err != nil || !res.Replayed {
			t.Fatal(res, err)
		}
	})
	assert.Zero(t, allocs)
}

// An in-memory store cannot hold a record over 1 MiB (Badger keeps it
// inline): a result that large is stored as its size only, as one over
// MaxValueSize is, and the store goes on; a scope asking for more is
// refused.
func TestInMemoryStoreKeepsResultsUnderItsLimit(t *testing.T) {
	ctx := testCtx(t)
	st := openTest(t, Options{InMemory: true})
	sc := scopeTest(t, st, "s", ScopeOptions{})
	big := bytes.Repeat([]byte("x"), 1<<20)
	res, err := sc.Do(ctx, "big", nil, func(context.Context) ([]byte, error) { return big, nil })
	require.NoError(t, err)
	assert.Equal(t, big, res.Value, "the first caller gets its result")
	_, err = sc.Do(ctx, "big", nil, func(context.Context) ([]byte, error) { t.Error("ran twice"); return nil, nil })
	assert.ErrorIs(t, err, ErrValueTooLarge)
	res, err = sc.Do(ctx, "small", nil, value(new(int), "s"))
	require.NoError(t, err)
	assert.Equal(t, "s", string(res.Value))

	_, err = st.Scope("wide", ScopeOptions{MaxValueSize: 2 << 20})
	assert.ErrorIs(t, err, ErrInvalidScope)
}
