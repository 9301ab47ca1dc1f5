package idemredis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemhttp"
	"github.com/idemkit/idem/idemredis"
	"github.com/idemkit/idem/idemredis/redistest"
	"github.com/idemkit/idem/internal/adminapi"
	"github.com/idemkit/idem/internal/testenv"
)

// instances opens n stores on one Redis key space, as n instances of a
// service would, each with its backend wrapped in a pausable one.
func instances(t testing.TB, n int, opts idem.Options) ([]*idem.Store, []*pausable) {
	rdb := redistest.Client(t)
	prefix := redistest.Prefix(t, rdb)
	stores := make([]*idem.Store, n)
	backends := make([]*pausable, n)
	for i := range stores {
		be, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
		require.NoError(t, err)
		backends[i] = &pausable{Backend: be}
		o := opts
		o.Backend = backends[i]
		stores[i], err = idem.Open(o)
		require.NoError(t, err)
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	return stores, backends
}

// pausable is a backend whose lease renewals can be held back, as they
// are while its process is stopped, and whose watching can be turned off.
// It counts the claims and reads sent through it.
type pausable struct {
	idem.Backend
	mu      sync.Mutex
	paused  chan struct{} // nil: running
	noWatch bool          // Watch fails: the store polls
	looks   atomic.Int64  // Claim and Get calls
}

func (p *pausable) Claim(ctx context.Context, key []byte, req idem.ClaimRequest) (idem.ClaimResult, error) {
	p.looks.Add(1)
	return p.Backend.Claim(ctx, key, req)
}

func (p *pausable) Get(ctx context.Context, key []byte) (idem.Entry, bool, error) {
	p.looks.Add(1)
	return p.Backend.Get(ctx, key)
}

var errNoWatch = errors.New("watching turned off")

func (p *pausable) Watch(ctx context.Context, key []byte) (<-chan struct{}, func(), error) {
	if p.noWatch {
		return nil, nil, errNoWatch
	}
	return p.Backend.(idem.Watcher).Watch(ctx, key)
}

func (p *pausable) pause() {
	p.mu.Lock()
	p.paused = make(chan struct{})
	p.mu.Unlock()
}

func (p *pausable) resume() {
	p.mu.Lock()
	close(p.paused)
	p.paused = nil
	p.mu.Unlock()
}

func (p *pausable) Renew(ctx context.Context, key []byte, owner uint64, lease time.Duration) error {
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	if paused != nil {
		<-paused
	}
	return p.Backend.Renew(ctx, key, owner, lease)
}

func scope(t testing.TB, st *idem.Store, o idem.ScopeOptions) *idem.Scope {
	sc, err := st.Scope("orders", o)
	require.NoError(t, err)
	return sc
}

func value(runs *atomic.Int64, v string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		runs.Add(1)
		return []byte(v), nil
	}
}

func TestInstancesShareRecords(t *testing.T) {
	ctx := context.Background()
	stores, _ := instances(t, 2, idem.Options{})
	a, b := scope(t, stores[0], idem.ScopeOptions{}), scope(t, stores[1], idem.ScopeOptions{})
	var runs atomic.Int64
	res, err := a.Tenant("acct").Do(ctx, "k", []byte("fp"), value(&runs, "first"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)

	res, err = b.Tenant("acct").Do(ctx, "k", []byte("fp"), value(&runs, "second"))
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, "first", string(res.Value), "a retry on another instance gets the first result")
	_, err = b.Tenant("acct").Do(ctx, "k", []byte("other"), value(&runs, "second"))
	assert.ErrorIs(t, err, idem.ErrFingerprintMismatch)
	res, err = b.Tenant("other").Do(ctx, "k", []byte("fp"), value(&runs, "tenant"))
	require.NoError(t, err)
	assert.False(t, res.Replayed, "tenants stay apart")

	_, err = a.Do(ctx, "fails", nil, func(context.Context) ([]byte, error) {
		return nil, idem.Permanent(errors.New("card declined"))
	})
	require.Error(t, err)
	_, err = b.Do(ctx, "fails", nil, value(&runs, "x"))
	var fe *idem.FailureError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "card declined", fe.Message)
	assert.Equal(t, int64(2), runs.Load())

	info, err := stores[1].Lookup(ctx, "orders", "acct", "k")
	require.NoError(t, err)
	assert.Equal(t, idem.StateCompleted, info.State)
	var n int
	require.NoError(t, stores[1].Records(ctx, idem.RecordFilter{Scope: "orders"}, func(idem.RecordInfo) error { n++; return nil }))
	assert.Equal(t, 3, n)
}

func TestDuplicateOnAnotherInstanceWaits(t *testing.T) {
	for _, watch := range []bool{true, false} {
		t.Run(fmt.Sprint("watch=", watch), func(t *testing.T) { testDuplicateWaits(t, watch) })
	}
}

func testDuplicateWaits(t *testing.T, watch bool) {
	ctx := context.Background()
	stores, backends := instances(t, 2, idem.Options{})
	backends[1].noWatch = !watch
	a, b := scope(t, stores[0], idem.ScopeOptions{}), scope(t, stores[1], idem.ScopeOptions{})
	started, finish := make(chan struct{}), make(chan struct{})
	var runs atomic.Int64
	go func() {
		_, _ = a.Do(ctx, "k", []byte("fp"), func(context.Context) ([]byte, error) {
			runs.Add(1)
			close(started)
			<-finish
			return []byte("result"), nil
		})
	}()
	<-started

	_, err := b.Claim(ctx, "k", []byte("fp"))
	assert.ErrorIs(t, err, idem.ErrInProgress, "Claim does not wait")
	_, err = b.Do(ctx, "k", []byte("other"), value(&runs, "x"))
	assert.ErrorIs(t, err, idem.ErrFingerprintMismatch, "checked while the owner runs")
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = b.Do(short, "k", []byte("fp"), value(&runs, "x"))
	assert.ErrorIs(t, err, idem.ErrInProgress)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	var wg sync.WaitGroup
	results := make(chan idem.Result, 8)
	for range 8 {
		wg.Go(func() {
			res, err := b.Do(ctx, "k", []byte("fp"), value(&runs, "x"))
			assert.NoError(t, err)
			results <- res
		})
	}
	time.Sleep(30 * time.Millisecond) // let them wait
	close(finish)
	wg.Wait()
	close(results)
	for res := range results {
		assert.True(t, res.Replayed)
		assert.Equal(t, "result", string(res.Value))
	}
	assert.Equal(t, int64(1), runs.Load(), "the function ran once, on one instance")
	assert.NotZero(t, stores[1].Stats().Coalesced)
}

// TestWaitingOnAnExpiredLookingRecordIsPaced has a duplicate wait on a
// record that its own clock finds expired (its OrphanTTL is shorter than
// the run) while the owner still holds it: it must wait for the owner at
// the usual pace, not ask the server again and again.
func TestWaitingOnAnExpiredLookingRecordIsPaced(t *testing.T) {
	for _, watch := range []bool{true, false} {
		t.Run(fmt.Sprint("watch=", watch), func(t *testing.T) {
			ctx := context.Background()
			stores, backends := instances(t, 2, idem.Options{})
			backends[1].noWatch = !watch
			o := idem.ScopeOptions{OrphanTTL: 20 * time.Millisecond, Orphans: idem.OrphanReport}
			a, b := scope(t, stores[0], o), scope(t, stores[1], o)
			started := make(chan struct{})
			var runs atomic.Int64
			go func() {
				_, _ = a.Do(ctx, "slow", nil, func(context.Context) ([]byte, error) {
					runs.Add(1)
					close(started)
					time.Sleep(500 * time.Millisecond)
					return []byte("result"), nil
				})
			}()
			<-started
			time.Sleep(40 * time.Millisecond) // the in-progress record is past its OrphanTTL now
			before := backends[1].looks.Load()
			res, err := b.Do(ctx, "slow", nil, value(&runs, "x"))
			looks := backends[1].looks.Load() - before
			require.NoError(t, err)
			assert.True(t, res.Replayed)
			assert.Equal(t, "result", string(res.Value))
			assert.Equal(t, int64(1), runs.Load())
			t.Logf("%d claims and reads while waiting about 460 ms", looks)
			assert.Less(t, looks, int64(100), "waiting is paced")
		})
	}
}

func TestPausedOwnerLosesItsKey(t *testing.T) {
	ctx := context.Background()
	opts := idem.Options{Lease: 200 * time.Millisecond, LeaseRenewal: 50 * time.Millisecond}
	stores, backends := instances(t, 2, opts)
	a, b := scope(t, stores[0], idem.ScopeOptions{}), scope(t, stores[1], idem.ScopeOptions{})

	started := make(chan struct{})
	type outcome struct {
		res   idem.Result
		err   error
		cause error
	}
	done := make(chan outcome, 1)
	backends[0].pause() // instance a stalls: its renewals do not reach Redis
	go func() {
		var cause error
		res, err := a.Do(ctx, "k", nil, func(ctx context.Context) ([]byte, error) {
			close(started)
			<-ctx.Done() // the work notices that its claim is lost
			cause = context.Cause(ctx)
			return []byte("stale"), nil
		})
		done <- outcome{res, err, cause}
	}()
	<-started

	var runs atomic.Int64
	res, err := b.Do(ctx, "k", nil, value(&runs, "fresh"))
	require.NoError(t, err, "b waits for the lease to lapse, then takes the orphan over")
	assert.False(t, res.Replayed)
	assert.Equal(t, uint64(1), stores[1].Stats().Orphans)

	backends[0].resume()
	out := <-done
	assert.ErrorIs(t, out.cause, idem.ErrLeaseLost, "the owner's context is cancelled")
	assert.ErrorIs(t, out.err, idem.ErrLeaseLost, "and its result is not stored")

	res, err = a.Do(ctx, "k", nil, value(&runs, "x"))
	require.NoError(t, err)
	assert.Equal(t, "fresh", string(res.Value), "the new owner's result stands")
	assert.Equal(t, int64(1), runs.Load())
}

func TestLapsedClaimUnderOrphanReport(t *testing.T) {
	ctx := context.Background()
	opts := idem.Options{Lease: 100 * time.Millisecond, LeaseRenewal: 30 * time.Millisecond}
	stores, backends := instances(t, 2, opts)
	o := idem.ScopeOptions{Orphans: idem.OrphanReport}
	a, b := scope(t, stores[0], o), scope(t, stores[1], o)
	backends[0].pause()
	cl, err := a.Claim(ctx, "k", nil)
	require.NoError(t, err)
	require.True(t, cl.Owned())
	assert.NotZero(t, cl.Token())

	_, err = b.Claim(ctx, "k", nil)
	assert.ErrorIs(t, err, idem.ErrInProgress, "held while the lease runs")
	deadline := time.Now().Add(5 * time.Second)
	for errors.Is(err, idem.ErrInProgress) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		_, err = b.Claim(ctx, "k", nil)
	}
	assert.ErrorIs(t, err, idem.ErrOutcomeUnknown, "lapsed: reported, never run again")
	info, err := stores[1].Lookup(ctx, "orders", "", "k")
	require.NoError(t, err)
	assert.Equal(t, idem.StateOrphaned, info.State)

	// Nobody took it over, so the owner may still record its outcome.
	backends[0].resume()
	require.NoError(t, cl.Complete(ctx, []byte("late")))
	res, err := b.Do(ctx, "k", nil, value(new(atomic.Int64), "x"))
	require.NoError(t, err)
	assert.Equal(t, "late", string(res.Value))
}

func TestCapsOnRedis(t *testing.T) {
	ctx := context.Background()
	stores, _ := instances(t, 2, idem.Options{})
	sc := scope(t, stores[0], idem.ScopeOptions{MaxKeys: 3})
	var runs atomic.Int64
	for i := range 3 {
		_, err := sc.Do(ctx, fmt.Sprint("k", i), nil, value(&runs, "v"))
		require.NoError(t, err)
	}
	_, err := sc.Do(ctx, "k3", nil, value(&runs, "v"))
	assert.ErrorIs(t, err, idem.ErrScopeFull)
	res, err := sc.Do(ctx, "k0", nil, value(&runs, "v"))
	require.NoError(t, err, "replays work in a full scope")
	assert.True(t, res.Replayed)
	assert.Equal(t, int64(3), stores[0].Stats().Scopes["orders"].Keys)

	// Another instance counts a capped scope's keys when it opens it, and
	// again at each collection.
	other := scope(t, stores[1], idem.ScopeOptions{MaxKeys: 3})
	assert.Equal(t, int64(3), stores[1].Stats().Scopes["orders"].Keys)
	_, err = other.Do(ctx, "k4", nil, value(&runs, "v"))
	assert.ErrorIs(t, err, idem.ErrScopeFull)
	require.NoError(t, stores[0].Delete(ctx, "orders", "", "k0"))
	gc, err := stores[1].GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2), gc.Live)
	_, err = other.Do(ctx, "k4", nil, value(&runs, "v"))
	assert.NoError(t, err, "room again once the others' deletion is counted")
}

func TestCachedRecordIsReplayedNoLongerThanCacheMaxAge(t *testing.T) {
	ctx := context.Background()
	stores, _ := instances(t, 2, idem.Options{CacheMaxAge: 100 * time.Millisecond})
	a := scope(t, stores[0], idem.ScopeOptions{})
	var runs atomic.Int64
	for range 2 { // the second call reads the record, and caches it
		_, err := a.Do(ctx, "k", nil, value(&runs, "v"))
		require.NoError(t, err)
	}
	require.NoError(t, stores[1].Delete(ctx, "orders", "", "k"))
	deleted := time.Now()
	for {
		res, err := a.Do(ctx, "k", nil, value(&runs, "again"))
		require.NoError(t, err)
		if !res.Replayed {
			break
		}
		require.Less(t, time.Since(deleted), 100*time.Millisecond+50*time.Millisecond,
			"a deleted record is replayed from the cache for CacheMaxAge at most")
		time.Sleep(5 * time.Millisecond)
	}
	assert.Equal(t, int64(2), runs.Load())
}

func TestMiddlewareAcrossInstances(t *testing.T) {
	stores, _ := instances(t, 2, idem.Options{})
	var runs atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "order %d", n)
	})
	var servers []*httptest.Server
	for _, st := range stores {
		mw, err := idemhttp.New(scope(t, st, idem.ScopeOptions{}), idemhttp.Options{Global: true, Wait: 5 * time.Second})
		require.NoError(t, err)
		srv := httptest.NewServer(mw(handler))
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	var wg sync.WaitGroup
	bodies := make(chan string, 10)
	for i := range 10 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, servers[i%2].URL+"/orders", strings.NewReader(`{"item":1}`))
			req.Header.Set("Idempotency-Key", "abc")
			resp, err := http.DefaultClient.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			assert.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
			bodies <- string(b)
		})
	}
	wg.Wait()
	close(bodies)
	for b := range bodies {
		assert.Equal(t, "order 1", b)
	}
	assert.Equal(t, int64(1), runs.Load(), "one order, whichever instance each retry reached")
}

// TestLateCompletionIsFenced completes a claim whose key was taken over
// while its renewals were stalled: the backend refuses it by owner token.
func TestLateCompletionIsFenced(t *testing.T) {
	ctx := context.Background()
	opts := idem.Options{Lease: 100 * time.Millisecond, LeaseRenewal: 30 * time.Millisecond}
	stores, backends := instances(t, 2, opts)
	a, b := scope(t, stores[0], idem.ScopeOptions{}), scope(t, stores[1], idem.ScopeOptions{})
	backends[0].pause()
	defer backends[0].resume()
	cl, err := a.Claim(ctx, "k", nil)
	require.NoError(t, err)
	var runs atomic.Int64
	res, err := b.Do(ctx, "k", nil, value(&runs, "fresh"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)

	assert.ErrorIs(t, cl.Complete(ctx, []byte("stale")), idem.ErrLeaseLost)
	assert.ErrorIs(t, cl.Complete(ctx, []byte("stale")), idem.ErrLeaseLost, "and stays lost")
	res, err = a.Do(ctx, "k", nil, value(&runs, "x"))
	require.NoError(t, err)
	assert.Equal(t, "fresh", string(res.Value))
}

// TestAdminHandlerOnRedis reads and deletes records of a Redis store
// through the admin handler, which the idem CLI's -url path uses.
func TestAdminHandlerOnRedis(t *testing.T) {
	ctx := context.Background()
	stores, _ := instances(t, 2, idem.Options{})
	var runs atomic.Int64
	_, err := scope(t, stores[0], idem.ScopeOptions{}).Tenant("acct").Do(ctx, "k", nil, value(&runs, "v"))
	require.NoError(t, err)
	srv := httptest.NewServer(stores[1].AdminHandler(idem.AdminOptions{AllowMutations: true}))
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/records?scope=orders")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var info idem.RecordInfo
	require.NoError(t, info.UnmarshalJSON([]byte(strings.TrimSpace(string(body)))))
	assert.Equal(t, "acct", info.Tenant)
	assert.Equal(t, idem.StateCompleted, info.State)

	del, err := http.NewRequest("POST", srv.URL+"/delete?scope=orders&tenant=acct&key=k", nil)
	require.NoError(t, err)
	del.Header.Set(adminapi.MutationHeader, adminapi.MutationValue) // as the idem CLI sends it
	resp, err = http.DefaultClient.Do(del)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	_, err = stores[0].Lookup(ctx, "orders", "acct", "k")
	assert.ErrorIs(t, err, idem.ErrNotFound, "deleted in the shared store")
}

// TestMaxTTLOnRedis stores outcomes with the longest retention: each
// instance must replay them, and the Redis key must carry a TTL in the
// future (a wrapped deadline would be in the past, and Redis would drop
// the record at once).
func TestMaxTTLOnRedis(t *testing.T) {
	ctx := context.Background()
	stores, _ := instances(t, 2, idem.Options{})
	o := idem.ScopeOptions{TTL: idem.MaxTTL, OrphanTTL: idem.MaxTTL, Orphans: idem.OrphanReport}
	a, b := scope(t, stores[0], o), scope(t, stores[1], o)
	var runs atomic.Int64
	_, err := a.Do(ctx, "forever", nil, value(&runs, "v"))
	require.NoError(t, err)
	res, err := b.Do(ctx, "forever", nil, value(&runs, "again"))
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, "v", string(res.Value))
	assert.WithinDuration(t, time.Now().Add(idem.MaxTTL), res.ExpiresAt, time.Minute)
	assert.Equal(t, int64(1), runs.Load())

	claim, err := a.Claim(ctx, "held", nil)
	require.NoError(t, err)
	require.True(t, claim.Owned())
	_, err = b.Claim(ctx, "held", nil)
	assert.ErrorIs(t, err, idem.ErrInProgress, "a claim kept for MaxTTL holds the key")
	require.NoError(t, claim.Complete(ctx, []byte("done")))
}

// stall keeps the Redis server busy for d with a script that spins, as a
// slow server or a failover pause would, and returns once it has begun.
func stall(t *testing.T, rdb *redis.Client, d time.Duration) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	began := make(chan struct{})
	go func() {
		defer close(done)
		close(began)
		err := rdb.Eval(context.Background(), `
local t = redis.call('TIME')
local start = tonumber(t[1]) * 1000000 + tonumber(t[2])
repeat
  t = redis.call('TIME')
until tonumber(t[1]) * 1000000 + tonumber(t[2]) - start >= tonumber(ARGV[1])
return 1`, nil, d.Microseconds()).Err()
		assert.NoError(t, err)
	}()
	<-began
	time.Sleep(20 * time.Millisecond) // the script is running
	return done
}

// TestClaimWhoseCallerLeftIsGivenBack sends claims while the server
// stalls, from callers whose deadlines end first: the claims still land,
// and must be given back, so that each retry runs at once instead of
// finding the key held (for a lease) or, under OrphanReport, orphaned.
func TestClaimWhoseCallerLeftIsGivenBack(t *testing.T) {
	for _, quick := range []bool{true, false} {
		t.Run(fmt.Sprint("quick=", quick), func(t *testing.T) {
			ctx := context.Background()
			rdb := redistest.Client(t)
			prefix := redistest.Prefix(t, rdb)
			be, err := idemredis.New(rdb, idemredis.Options{Prefix: prefix})
			require.NoError(t, err)
			if !quick {
				idemredis.ScriptClaimsOnly(be)
			}
			st, err := idem.Open(idem.Options{Backend: be})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			sc := scope(t, st, idem.ScopeOptions{Orphans: idem.OrphanReport})
			var runs atomic.Int64
			_, err = sc.Do(ctx, "warm", nil, value(&runs, "v")) // a fresh clock reading: quick claims
			require.NoError(t, err)

			const n = 20
			stalled := stall(t, rdb, 300*time.Millisecond)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
					defer cancel()
					_, err := sc.Do(short, fmt.Sprint("k", i), nil, value(&runs, "v"))
					assert.ErrorIs(t, err, context.DeadlineExceeded)
				})
			}
			wg.Wait()
			<-stalled
			assert.Equal(t, int64(1), runs.Load(), "nothing ran while the server stalled")
			for i := range n {
				retry, cancel := context.WithTimeout(ctx, 5*time.Second)
				res, err := sc.Do(retry, fmt.Sprint("k", i), nil, value(&runs, "v"))
				cancel()
				require.NoError(t, err, "k%d: the retry runs", i)
				assert.False(t, res.Replayed)
			}
			assert.Equal(t, int64(1+n), runs.Load())
		})
	}
}

// TestCallsDoNotWaitBehindBusyGoroutines stores new keys one by one while
// CPU-bound goroutines fill every processor: a pipeline must not wait for
// the scheduler to come round to it behind them. (A pipeline loop that
// yielded the processor before sending took 79-118 ms a call on 2 cores,
// against 18-27 µs.)
func TestCallsDoNotWaitBehindBusyGoroutines(t *testing.T) {
	stores, _ := instances(t, 1, idem.Options{})
	sc := scope(t, stores[0], idem.ScopeOptions{})
	testenv.KeepsPaceWhenBusy(t, func(i int) error {
		_, err := sc.Do(context.Background(), fmt.Sprint("k", i), nil, func(context.Context) ([]byte, error) { return []byte("v"), nil })
		return err
	})
}
