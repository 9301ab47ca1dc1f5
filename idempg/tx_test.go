package idempg_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idempg"
	"github.com/idemkit/idem/idempg/pgtest"
)

// shop is a store on Postgres and a business table beside its records.
type shop struct {
	pool    *pgxpool.Pool
	records string // the records' table
	orders  string // the business table: one row per effect
	st      *idem.Store
	sc      *idem.Scope
}

func newShop(t *testing.T, o idem.ScopeOptions) *shop {
	t.Helper()
	return newShopOn(t, pgtest.Pool(t), o)
}

// newShopOn is newShop on the given pool.
func newShopOn(t *testing.T, pool *pgxpool.Pool, o idem.ScopeOptions) *shop {
	t.Helper()
	ctx := context.Background()
	s := &shop{pool: pool, records: pgtest.Table(t, pool), orders: pgtest.Table(t, pool)}
	be, err := idempg.New(pool, idempg.Options{Table: s.records})
	require.NoError(t, err)
	require.NoError(t, be.Migrate(ctx))
	_, err = pool.Exec(ctx, "CREATE TABLE "+s.orders+" (key text NOT NULL, item text NOT NULL)")
	require.NoError(t, err)
	s.st, err = idem.Open(idem.Options{Backend: be, Lease: time.Second, GCInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.st.Close() })
	s.sc, err = s.st.Scope("orders", o)
	require.NoError(t, err)
	return s
}

// rows counts the business rows of key.
func (s *shop) rows(t *testing.T, key string) int {
	t.Helper()
	var n int
	require.NoError(t, s.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+s.orders+" WHERE key = $1", key).Scan(&n))
	return n
}

// order is the work of a Do: one business row, and its id as the result.
func (s *shop) order(key string) func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
	return func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		_, err := tx.Exec(ctx, "INSERT INTO "+s.orders+" (key, item) VALUES ($1, 'tea')", key)
		return []byte("order for " + key), err
	}
}

func TestDoCommitsTheRecordWithTheWork(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, idem.ScopeOptions{})
	res, err := idempg.Do(ctx, s.sc, s.pool, "k", nil, s.order("k"))
	require.NoError(t, err)
	assert.False(t, res.Replayed)
	assert.Equal(t, 1, s.rows(t, "k"))
	again, err := idempg.Do(ctx, s.sc, s.pool, "k", nil, s.order("k"))
	require.NoError(t, err)
	assert.True(t, again.Replayed)
	assert.Equal(t, "order for k", string(again.Value))
	assert.Equal(t, 1, s.rows(t, "k"), "the retry made no second row")
	info, err := s.st.Lookup(ctx, "orders", "", "k")
	require.NoError(t, err)
	assert.Equal(t, idem.StateCompleted, info.State)
}

func TestDoRollsBackWorkThatFails(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, idem.ScopeOptions{})
	_, err := idempg.Do(ctx, s.sc, s.pool, "k", nil, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		if _, err := s.order("k")(ctx, tx); err != nil {
			return nil, err
		}
		return nil, errors.New("card declined for now")
	})
	require.EqualError(t, err, "card declined for now")
	assert.Zero(t, s.rows(t, "k"), "the failed work left no row")
	assert.Panics(t, func() {
		_, _ = idempg.Do(ctx, s.sc, s.pool, "k", nil, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
			_, _ = s.order("k")(ctx, tx)
			panic("boom")
		})
	})
	assert.Zero(t, s.rows(t, "k"), "nor did the panic")
	_, err = idempg.Do(ctx, s.sc, s.pool, "k", nil, s.order("k"))
	require.NoError(t, err, "the key was released: the retry runs")
	assert.Equal(t, 1, s.rows(t, "k"))

	_, err = idempg.Do(ctx, s.sc, s.pool, "p", nil, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		_, _ = s.order("p")(ctx, tx)
		return nil, idem.Permanent(errors.New("no such item"))
	})
	require.ErrorIs(t, err, idem.ErrPermanent)
	assert.Zero(t, s.rows(t, "p"), "a permanent failure commits no work")
	_, err = idempg.Do(ctx, s.sc, s.pool, "p", nil, s.order("p"))
	assert.ErrorIs(t, err, idem.ErrPermanent, "and is replayed")
}

// TestDoFencesAnOwnerThatLostItsKey loses the claim while the work runs
// (its row is deleted, as a takeover would replace it): the completion
// finds another state of the key, and the work's row never commits.
func TestDoFencesAnOwnerThatLostItsKey(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, idem.ScopeOptions{})
	_, err := idempg.Do(ctx, s.sc, s.pool, "k", nil, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		_, err := s.pool.Exec(ctx, "DELETE FROM "+s.records) // the claim is gone
		require.NoError(t, err)
		return s.order("k")(ctx, tx)
	})
	require.ErrorIs(t, err, idem.ErrLeaseLost)
	assert.Zero(t, s.rows(t, "k"), "a stale owner's work is rolled back")
}

func TestDoSQL(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, idem.ScopeOptions{})
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	var runs atomic.Int32
	fn := func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
		runs.Add(1)
		_, err := tx.ExecContext(ctx, "INSERT INTO "+s.orders+" (key, item) VALUES ($1, 'tea')", "k")
		return []byte("done"), err
	}
	res, err := idempg.DoSQL(ctx, s.sc, db, "k", nil, fn)
	require.NoError(t, err)
	assert.False(t, res.Replayed)
	res, err = idempg.DoSQL(ctx, s.sc, db, "k", nil, fn)
	require.NoError(t, err)
	assert.True(t, res.Replayed)
	assert.Equal(t, int32(1), runs.Load())
	assert.Equal(t, 1, s.rows(t, "k"))

	_, err = idempg.DoSQL(ctx, s.sc, db, "fails", nil, func(ctx context.Context, tx *sql.Tx) ([]byte, error) {
		_, _ = tx.ExecContext(ctx, "INSERT INTO "+s.orders+" (key, item) VALUES ($1, 'tea')", "fails")
		return nil, errors.New("later")
	})
	require.Error(t, err)
	assert.Zero(t, s.rows(t, "fails"))
}

// TestDuplicateOnAnotherInstanceIsWoken runs two stores on one table: a
// duplicate on the second waits for the first's work and is woken by its
// notification, well before it would poll again.
func TestDuplicateOnAnotherInstanceIsWoken(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	table := pgtest.Table(t, pool)
	open := func() *idem.Scope {
		be, err := idempg.New(pool, idempg.Options{Table: table})
		require.NoError(t, err)
		require.NoError(t, be.Migrate(ctx))
		st, err := idem.Open(idem.Options{Backend: be, GCInterval: -1})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		sc, err := st.Scope("s", idem.ScopeOptions{})
		require.NoError(t, err)
		return sc
	}
	a, b := open(), open()
	started, finish := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	go func() {
		_, _ = a.Do(ctx, "k", nil, func(context.Context) ([]byte, error) {
			runs.Add(1)
			close(started)
			<-finish
			return []byte("first"), nil
		})
	}()
	<-started
	got := make(chan idem.Result, 1)
	go func() {
		res, err := b.Do(ctx, "k", nil, func(context.Context) ([]byte, error) { runs.Add(1); return []byte("second"), nil })
		assert.NoError(t, err)
		got <- res
	}()
	time.Sleep(1500 * time.Millisecond) // the duplicate waits, watched, and has polled once
	finished := time.Now()
	close(finish)
	res := <-got
	woken := time.Since(finished)
	assert.True(t, res.Replayed)
	assert.Equal(t, "first", string(res.Value))
	assert.Equal(t, int32(1), runs.Load())
	t.Logf("the duplicate had the result %v after it was stored", woken)
	assert.Less(t, woken, 500*time.Millisecond, "woken by the notification, not by polling (every second when watched)")
}

// TestCollectorDeletesExpiredRows stores records with a TTL of 200 ms
// and collects them once they are dead by the server's clock.
func TestCollectorDeletesExpiredRows(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, idem.ScopeOptions{TTL: 200 * time.Millisecond})
	for i := range 50 {
		_, err := s.sc.Do(ctx, fmt.Sprint("k", i), nil, func(context.Context) ([]byte, error) { return []byte("v"), nil })
		require.NoError(t, err)
	}
	_, err := s.sc.Do(ctx, "one-more", nil, func(context.Context) ([]byte, error) { return []byte("v"), nil })
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond) // the server's clock cannot be moved: wait for it
	gc, err := s.st.GC(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(51), gc.Deleted)
	var left int
	require.NoError(t, s.pool.QueryRow(ctx, "SELECT count(*) FROM "+s.records).Scan(&left))
	assert.Zero(t, left)
}
