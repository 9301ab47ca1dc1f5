package idempg

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemkit/idem"
)

// Do is idem.Scope.Do for work that writes to Postgres: fn runs in a
// transaction that Do begins on pool, and the key's result is written in
// that same transaction, which is then committed. The business rows and
// the stored result commit together or not at all:
//
//   - fn returns a value: the record is completed in tx and tx commits.
//     If the commit fails, nothing of fn's is kept either, and Do returns
//     the error (a serialization failure or deadlock, SQLSTATE 40001 or
//     40P01, is such an error: run Do again).
//   - fn returns an error, or panics: tx is rolled back, and the outcome
//     is what Scope.Do makes of it (a Permanent error is stored, any other
//     releases the key).
//   - The process dies anywhere: either both are committed, or neither is,
//     and the key's claim is an orphan whose work left nothing behind. A
//     scope with OrphanRerun (the default) runs it again, which is always
//     safe here.
//   - The claim is lost to another owner while fn runs (its lease lapsed):
//     the completion finds another owner and tx is rolled back: the stale
//     owner's writes never commit.
//
// The scope's store must run on an idempg [Backend] whose table is in the
// database pool reaches. A duplicate that arrives while fn runs waits for
// it, as with Scope.Do.
func Do(ctx context.Context, sc *idem.Scope, pool *pgxpool.Pool, key string, fingerprint []byte, fn func(ctx context.Context, tx pgx.Tx) ([]byte, error)) (idem.Result, error) {
	return run(ctx, sc, key, fingerprint, func(ctx context.Context) (txn, error) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return nil, err
		}
		return pgxTx{tx}, nil
	}, func(ctx context.Context, t txn) ([]byte, error) { return fn(ctx, t.(pgxTx).Tx) })
}

// DoSQL is [Do] for database/sql: fn runs in a transaction that DoSQL
// begins on db (a Postgres database reached through any driver, such as
// pgx's stdlib), in which the record is completed and which it commits.
// db must reach the database that holds the backend's table.
func DoSQL(ctx context.Context, sc *idem.Scope, db *sql.DB, key string, fingerprint []byte, fn func(ctx context.Context, tx *sql.Tx) ([]byte, error)) (idem.Result, error) {
	return run(ctx, sc, key, fingerprint, func(ctx context.Context) (txn, error) {
		// database/sql rolls a transaction back when the context it was
		// begun with ends: the outcome must be stored even if the
		// caller's context ends meanwhile, as with Scope.Do.
		tx, err := db.BeginTx(context.WithoutCancel(ctx), nil)
		if err != nil {
			return nil, err
		}
		return sqlTx{tx}, nil
	}, func(ctx context.Context, t txn) ([]byte, error) { return fn(ctx, t.(sqlTx).Tx) })
}

// txn is a transaction of either kind.
type txn interface {
	queryRow(ctx context.Context, sql string, args ...any) pgx.Row
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

type pgxTx struct{ pgx.Tx }

func (t pgxTx) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.QueryRow(ctx, sql, args...)
}
func (t pgxTx) commit(ctx context.Context) error   { return t.Commit(ctx) }
func (t pgxTx) rollback(ctx context.Context) error { return t.Rollback(ctx) }

type sqlTx struct{ *sql.Tx }

func (t sqlTx) queryRow(ctx context.Context, query string, args ...any) pgx.Row {
	return t.QueryRowContext(ctx, query, args...)
}
func (t sqlTx) commit(context.Context) error   { return t.Commit() }
func (t sqlTx) rollback(context.Context) error { return t.Rollback() }

// pending is the transaction of a Do in progress, carried in the context
// that the store hands to Backend.Complete.
type pending struct {
	tx txn // nil until fn has returned a value; nil again once ended
}

type pendingKey struct{}

// txOf returns the pending transaction ctx carries, if fn has returned a
// value in it.
func txOf(ctx context.Context) *pending {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	if p == nil || p.tx == nil {
		return nil
	}
	return p
}

// run is Do over either kind of transaction.
func run(ctx context.Context, sc *idem.Scope, key string, fingerprint []byte, begin func(context.Context) (txn, error), fn func(context.Context, txn) ([]byte, error)) (idem.Result, error) {
	p := &pending{}
	ctx = context.WithValue(ctx, pendingKey{}, p)
	defer func() {
		if p.tx != nil { // Complete never came: the store did not write
			_ = p.tx.rollback(context.WithoutCancel(ctx))
		}
	}()
	return sc.Do(ctx, key, fingerprint, func(ctx context.Context) ([]byte, error) {
		tx, err := begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("idempg: begin: %w", err)
		}
		ok := false
		defer func() {
			if !ok {
				_ = tx.rollback(context.WithoutCancel(ctx))
			}
		}()
		value, err := fn(ctx, tx)
		if err != nil {
			return nil, err
		}
		ok = true
		p.tx = tx // Backend.Complete writes the record in it, and commits
		return value, nil
	})
}

// complete writes the completion (args as for the complete statement) in
// the pending transaction and commits it; on any failure the transaction
// is rolled back, so that nothing of the work stays.
func (p *pending) complete(ctx context.Context, b *Backend, args []any) error {
	tx := p.tx
	p.tx = nil
	if err := b.owned("complete", tx.queryRow(ctx, b.sql.complete, args...)); err != nil {
		_ = tx.rollback(ctx)
		return err
	}
	if err := tx.commit(ctx); err != nil {
		_ = tx.rollback(ctx)
		return fmt.Errorf("idempg: commit: %w", err)
	}
	return nil
}
