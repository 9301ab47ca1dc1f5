// Package idempg is an [backend.Backend] on PostgreSQL 13 or later, through
// pgx, for services that already keep their data in Postgres: several
// instances share one table, and — what neither Badger nor Redis can give —
// a key's result can be committed in the same transaction as the side
// effect it records ([Do], [DoSQL]): the business rows and the stored
// result commit together or not at all.
//
//	pool, err := pgxpool.New(ctx, "postgres://…")
//	be, err := idempg.New(pool, idempg.Options{Table: "idem_records"})
//	err = be.Migrate(ctx) // once: creates the table, its sequence and index
//	st, err := idem.Open(idem.Options{Backend: be})
//	payments, err := st.Scope("payments", idem.ScopeOptions{})
//	res, err := idempg.Do(ctx, payments, pool, key, fingerprint, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
//		_, err := tx.Exec(ctx, "INSERT INTO payments …") // commits with the record
//		return receipt, err
//	})
//
// Each record is one row: the key and value as bytea, the owner of an
// in-progress claim, its lease, and its expiry, all on the server's clock
// (now()). A claim is one statement (INSERT … ON CONFLICT … DO UPDATE …
// WHERE the entry may be replaced), so it is atomic; owners are drawn from
// a sequence, so they increase from owner to owner and serve as fencing
// tokens. Completion, release and renewal are single statements that
// check the owner. A duplicate on another instance is woken by
// LISTEN/NOTIFY when the key's owner finishes ([Backend.Watch]); expired
// rows are deleted by the store's collector, a batch at a time, skipping
// rows that claims hold locked ([Backend.DeleteExpired]).
//
// Durability is the server's: an acknowledged claim or result is
// committed.
package idempg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemkit/idem/backend"
	"github.com/idemkit/idem/internal/serverclock"
)

// Options configures [New].
type Options struct {
	// Table is the table that holds the records, optionally qualified by
	// its schema ("schema.table"); each part is a lower-case SQL
	// identifier ([a-z_][a-z0-9_]*, at most 48 bytes). Empty means
	// "idem_records". Its sequence is Table + "_owner", its index Table +
	// "_expires", its notification channel Table + "_done".
	Table string
}

// Backend is an [backend.Backend] on a Postgres table. It is safe for
// concurrent use.
type Backend struct {
	pool    *pgxpool.Pool
	table   string // qualified, quoted where needed: ready for SQL
	channel string // the LISTEN/NOTIFY channel
	sql     statements
	clock   serverclock.Clock
	watch   watchers
	once    sync.Once // stops watching
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Watcher = (*Backend)(nil)
	_ backend.Clock   = (*Backend)(nil)
	_ backend.Expirer = (*Backend)(nil)
)

// identifier is one part of a table name.
var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

// New returns a backend that keeps its records in opts.Table through
// pool. The pool stays the caller's: Close (which idem.Store.Close calls)
// stops the backend's listener but does not close the pool. The table
// must exist: see [Backend.Migrate].
func New(pool *pgxpool.Pool, opts Options) (*Backend, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: idempg needs a pool", backend.ErrInvalidOptions)
	}
	if opts.Table == "" {
		opts.Table = "idem_records"
	}
	parts := strings.Split(opts.Table, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%w: idempg table %q: want table or schema.table", backend.ErrInvalidOptions, opts.Table)
	}
	for _, p := range parts {
		if !identifier.MatchString(p) {
			return nil, fmt.Errorf("%w: idempg table %q: each part must match %s", backend.ErrInvalidOptions, opts.Table, identifier)
		}
	}
	b := &Backend{pool: pool, table: opts.Table, channel: strings.ReplaceAll(opts.Table, ".", "_") + "_done"}
	b.clock.Read = b.serverTime
	b.sql = newStatements(b.table, b.channel)
	return b, nil
}

// Migrate creates the table, its owner sequence and its expiry index if
// they do not exist. It needs the right to create them, no more (not a
// superuser). The SQL is also in [Backend.Schema], for those who apply
// migrations with a tool of their own.
//
// Instances that start together may all call it: they take turns, under
// a transaction-scoped advisory lock named by the table (two concurrent
// CREATE ... IF NOT EXISTS would otherwise collide in the catalog).
func (b *Backend) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "idempg migrate "+b.table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, b.Schema())
		return err
	})
	if err != nil {
		return b.fail("migrate", err)
	}
	return nil
}

// Schema returns the SQL that [Backend.Migrate] runs.
func (b *Backend) Schema() string { return b.sql.schema }

// us is a duration in whole microseconds, rounding up: an interval for
// SQL, never early.
func us(d time.Duration) int64 { return int64((max(d, 0) + time.Microsecond - 1) / time.Microsecond) }

// Claim implements [backend.Backend]. Volatile claims are stored like any,
// since other instances must see them, but their commits do not wait for
// the server's disk.
func (b *Backend) Claim(ctx context.Context, key []byte, req backend.ClaimRequest) (backend.ClaimResult, error) {
	ttl := max(req.TTL, req.Lease)
	nonce := int64(rand.Uint64N(math.MaxInt64-1)) + 1
	// A claim that races with the insert of the same new key by another
	// transaction sees neither the row (its snapshot is older) nor a
	// conflict it may overwrite: it reads the row as it is now, and if
	// that is gone too (released meanwhile), claims again.
	for range maxClaimAttempts {
		var (
			owner     *int64
			prev      []byte
			prevOwner *int64
			lapsed    *bool
		)
		err := b.pool.QueryRow(ctx, b.sql.claim, key, req.Value, us(req.Lease), us(ttl),
			req.Takeover, req.Stale != nil, req.Stale, nonce, req.Volatile).Scan(&owner, &prev, &prevOwner, &lapsed)
		if err != nil {
			// The statement may have committed before its reply was lost
			// (ctx ended, the connection broke): give back what this
			// attempt may have claimed, so that nobody finds the key held
			// by a caller that has left.
			go b.giveBack(bytes.Clone(key), nonce)
			return backend.ClaimResult{}, b.fail("claim", err)
		}
		res := backend.ClaimResult{}
		if prevOwner != nil {
			res.Found = true
			res.Prev = backend.Entry{Value: prev, Owner: uint64(*prevOwner), Lapsed: lapsed != nil && *lapsed}
		}
		if owner != nil {
			res.Owner, res.Token = uint64(*owner), uint64(*owner)
			return res, nil
		}
		if res.Found {
			return res, nil
		}
		e, found, err := b.Get(ctx, key)
		if err != nil {
			return backend.ClaimResult{}, err
		}
		if found {
			return backend.ClaimResult{Found: true, Prev: e}, nil
		}
	}
	return backend.ClaimResult{}, fmt.Errorf("idempg: claim: the key changed under %d claims in a row", maxClaimAttempts)
}

// maxClaimAttempts bounds how often a claim is tried again while the key
// keeps appearing and disappearing under it.
const maxClaimAttempts = 100

// giveBackTimeout bounds the release of a claim whose caller left.
const giveBackTimeout = 10 * time.Second

// giveBack deletes the claim of key made with nonce, if there is one. It
// is best effort; a claim it cannot delete lapses after its lease.
func (b *Backend) giveBack(key []byte, nonce int64) {
	ctx, cancel := context.WithTimeout(context.Background(), giveBackTimeout)
	defer cancel()
	_, _ = b.pool.Exec(ctx, b.sql.giveBack, key, nonce)
}

// owned reads the count of rows a statement that changes an owner's entry
// changed, and reports ErrLeaseLost if it changed none.
func (b *Backend) owned(op string, row pgx.Row) error {
	var n, notified int64
	if err := row.Scan(&n, &notified); err != nil {
		return b.fail(op, err)
	}
	if n == 0 {
		return backend.ErrLeaseLost
	}
	return nil
}

// Renew implements [backend.Backend].
func (b *Backend) Renew(ctx context.Context, key []byte, owner uint64, lease time.Duration) error {
	return b.owned("renew", b.pool.QueryRow(ctx, b.sql.renew, key, int64(owner), us(lease)))
}

// Complete implements [backend.Backend]. If ctx carries a transaction of
// [Do] or [DoSQL], the completion is written in it and the transaction is
// committed: Complete returns nil only once both are.
func (b *Backend) Complete(ctx context.Context, key []byte, owner uint64, value []byte, ttl time.Duration) error {
	args := []any{key, int64(owner), value, us(ttl), b.channel}
	if tx := txOf(ctx); tx != nil {
		return b.completeIn(ctx, tx, args)
	}
	return b.owned("complete", b.pool.QueryRow(ctx, b.sql.complete, args...))
}

// Release implements [backend.Backend].
func (b *Backend) Release(ctx context.Context, key []byte, owner uint64) error {
	return b.owned("release", b.pool.QueryRow(ctx, b.sql.release, key, int64(owner), b.channel))
}

// Get implements [backend.Backend].
func (b *Backend) Get(ctx context.Context, key []byte) (backend.Entry, bool, error) {
	var (
		e      backend.Entry
		owner  int64
		lapsed bool
	)
	err := b.pool.QueryRow(ctx, b.sql.get, key).Scan(&e.Value, &owner, &lapsed)
	if errors.Is(err, pgx.ErrNoRows) {
		return backend.Entry{}, false, nil
	}
	if err != nil {
		return backend.Entry{}, false, b.fail("get", err)
	}
	e.Owner, e.Lapsed = uint64(owner), lapsed
	if e.Value == nil {
		e.Value = []byte{}
	}
	return e, true, nil
}

// Delete implements [backend.Backend].
func (b *Backend) Delete(ctx context.Context, key []byte) error {
	if _, err := b.pool.Exec(ctx, b.sql.delete, key); err != nil {
		return b.fail("delete", err)
	}
	return nil
}

// Scan implements [backend.Backend], in key order. The rows are read as
// fn takes them, on one connection.
func (b *Backend) Scan(ctx context.Context, prefix []byte, fn func(key []byte, e backend.Entry) error) error {
	rows, err := b.pool.Query(ctx, b.sql.scan, prefix, prefixEnd(prefix))
	if err != nil {
		return b.fail("scan", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			key    []byte
			e      backend.Entry
			owner  int64
			lapsed bool
		)
		if err := rows.Scan(&key, &e.Value, &owner, &lapsed); err != nil {
			return b.fail("scan", err)
		}
		e.Owner, e.Lapsed = uint64(owner), lapsed
		if err := fn(key, e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return b.fail("scan", err)
	}
	return nil
}

// prefixEnd is the least key greater than every key with prefix, or nil
// if there is none (a prefix of 0xff bytes only).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// DeleteExpired implements [backend.Expirer]: it deletes at most limit
// expired rows, skipping those a claim holds locked.
func (b *Backend) DeleteExpired(ctx context.Context, limit int) (int, int64, error) {
	var (
		n     int
		bytes int64
	)
	if err := b.pool.QueryRow(ctx, b.sql.expire, limit).Scan(&n, &bytes); err != nil {
		return 0, 0, b.fail("delete expired", err)
	}
	return n, bytes, nil
}

// Now implements [backend.Clock]: the server's clock, estimated between
// readings (see internal/serverclock): never early, late by at most a
// reading's round trip.
func (b *Backend) Now(ctx context.Context) (time.Time, error) {
	t, err := b.clock.Now(ctx)
	if err != nil {
		return time.Time{}, b.fail("clock", err)
	}
	return t, nil
}

// serverTime reads the server's clock (serverclock.Clock.Read).
func (b *Backend) serverTime(ctx context.Context) (int64, error) {
	var us int64
	err := b.pool.QueryRow(ctx, `SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint`).Scan(&us)
	return us, err
}

// Close implements [backend.Backend]. It leaves the pool open.
func (b *Backend) Close() error {
	b.once.Do(b.stopWatching)
	return nil
}

// fail wraps an error of op with what the pool says of itself, so that
// an exhausted pool is told from a broken server.
func (b *Backend) fail(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("idempg: %s: %w", op, err)
	}
	s := b.pool.Stat()
	return fmt.Errorf("idempg: %s: %w (pool: %d of %d connections in use)", op, err, s.AcquiredConns(), s.MaxConns())
}
