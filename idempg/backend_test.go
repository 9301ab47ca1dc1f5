package idempg_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/backendtest"
	"github.com/idemkit/idem/idempg"
	"github.com/idemkit/idem/idempg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m, "idempg") }

// newBackend returns a backend on a table of t's own, migrated.
func newBackend(t testing.TB) *idempg.Backend {
	t.Helper()
	pool := pgtest.Pool(t)
	be, err := idempg.New(pool, idempg.Options{Table: pgtest.Table(t, pool)})
	require.NoError(t, err)
	require.NoError(t, be.Migrate(context.Background()))
	return be
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return newBackend(t) })
}

func TestModel(t *testing.T) {
	backendtest.RunModel(t, func(tb testing.TB) func() backend.Backend {
		pool := pgtest.Pool(tb)
		table := pgtest.Table(tb, pool)
		return func() backend.Backend {
			be, err := idempg.New(pool, idempg.Options{Table: table})
			require.NoError(tb, err)
			require.NoError(tb, be.Migrate(context.Background()))
			return be
		}
	})
}

func TestNewRefusesBadTables(t *testing.T) {
	for _, table := range []string{"Idem", "a;drop table x", "a.b.c", `"quoted"`, "1abc", "a b", strings.Repeat("x", 49)} {
		_, err := idempg.New(&pgxpool.Pool{}, idempg.Options{Table: table})
		assert.ErrorIs(t, err, idem.ErrInvalidOptions, "%q", table)
	}
	_, err := idempg.New(nil, idempg.Options{})
	assert.ErrorIs(t, err, idem.ErrInvalidOptions)
	be, err := idempg.New(&pgxpool.Pool{}, idempg.Options{Table: "ops.idem_records"})
	require.NoError(t, err)
	assert.Contains(t, be.Schema(), "CREATE TABLE IF NOT EXISTS ops.idem_records")
}

// A closed pool is an error that says so, never a hang.
func TestClosedPoolIsAnError(t *testing.T) {
	pool := pgtest.Pool(t)
	be, err := idempg.New(pool, idempg.Options{Table: pgtest.Table(t, pool)})
	require.NoError(t, err)
	require.NoError(t, be.Migrate(context.Background()))
	pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = be.Get(ctx, []byte("\x01k"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "closed pool")
	assert.NoError(t, ctx.Err(), "it did not wait for the context")
}

// An exhausted pool is an error at the caller's deadline, with the pool's
// state in it.
func TestExhaustedPoolIsAnErrorAtTheDeadline(t *testing.T) {
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	defer pool.Close()
	setup := pgtest.Pool(t)
	be, err := idempg.New(pool, idempg.Options{Table: pgtest.Table(t, setup)})
	require.NoError(t, err)
	require.NoError(t, be.Migrate(context.Background()))
	held, err := pool.Acquire(context.Background())
	require.NoError(t, err)
	defer held.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, _, err = be.Get(ctx, []byte("\x01k"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "pool: 1 of 1 connections in use")
	assert.Less(t, time.Since(began), 2*time.Second)
}

// TestInstancesMigrateTogether: instances that start at once all migrate
// the same new table without an error (concurrent CREATE ... IF NOT EXISTS
// collide in Postgres' catalog unless they take turns).
func TestInstancesMigrateTogether(t *testing.T) {
	pool := pgtest.Pool(t)
	for range 5 {
		table := pgtest.Table(t, pool)
		errs := make(chan error, 8)
		for range cap(errs) {
			go func() {
				be, err := idempg.New(pool, idempg.Options{Table: table})
				if err == nil {
					err = be.Migrate(context.Background())
				}
				errs <- err
			}()
		}
		for range cap(errs) {
			require.NoError(t, <-errs)
		}
	}
}
