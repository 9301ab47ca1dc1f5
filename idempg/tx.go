package idempg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"sync"

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
		tx, err := Begin(ctx, pool)
		return pgxTx{tx}, err
	}, func(ctx context.Context, t txn) ([]byte, error) { return fn(ctx, t.(pgxTx).Tx) })
}

// DoSQL is [Do] for database/sql: fn runs in a transaction that DoSQL
// begins on db (a Postgres database reached through any driver, such as
// pgx's stdlib), in which the record is completed and which it commits.
// db must reach the database that holds the backend's table.
func DoSQL(ctx context.Context, sc *idem.Scope, db *sql.DB, key string, fingerprint []byte, fn func(ctx context.Context, tx *sql.Tx) ([]byte, error)) (idem.Result, error) {
	return run(ctx, sc, key, fingerprint, func(ctx context.Context) (txn, error) {
		tx, err := BeginSQL(ctx, db)
		return sqlTx{tx}, err
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

// pending is the slot, carried in the context of a key's work, for the
// transaction that the work runs in; Backend.Complete finds it there (the
// store hands Complete that context, without its cancellation).
type pending struct {
	mu sync.Mutex
	tx txn // nil until the work begins it; nil again once committed or rolled back
}

type pendingKey struct{}

// WithTx returns a context with a slot for the transaction of the work
// that runs under it: [Begin] or [BeginSQL] begins that transaction, and
// the completion of the key's claim, called with a context derived from
// this one, writes the result in it and commits it. End releases the
// transaction if no completion came (the work failed, or panicked).
//
// [Do] and [DoSQL] do all of this; call WithTx yourself when something
// else runs the work, such as the idemhttp middleware (see [Handler]).
func WithTx(ctx context.Context) context.Context {
	return context.WithValue(ctx, pendingKey{}, &pending{})
}

// TxContext is [WithTx] with its [End], in the shape that
// idemmsg.Options.Context takes: a message handler that begins its
// transaction with [Begin] commits the message's outcome in it.
func TxContext(ctx context.Context) (context.Context, func()) {
	ctx = WithTx(ctx)
	return ctx, func() { End(ctx) }
}

// Begin begins the transaction of the work running under ctx, which
// [WithTx] made, on pool.
func Begin(ctx context.Context, pool *pgxpool.Pool) (pgx.Tx, error) {
	p, err := slotOf(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("idempg: begin: %w", err)
	}
	return tx, p.set(pgxTx{tx})
}

// BeginSQL is Begin for database/sql. The transaction is not bound to
// ctx's cancellation (database/sql would roll it back when ctx ends): the
// outcome of work that has run is stored even if its caller has gone.
func BeginSQL(ctx context.Context, db *sql.DB) (*sql.Tx, error) {
	p, err := slotOf(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("idempg: begin: %w", err)
	}
	return tx, p.set(sqlTx{tx})
}

// End rolls back the transaction of ctx's slot if it is still open: the
// work ended without a completion. It is safe to defer.
func End(ctx context.Context) {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	if p == nil {
		return
	}
	p.mu.Lock()
	tx := p.tx
	p.tx = nil
	p.mu.Unlock()
	if tx != nil {
		_ = tx.rollback(context.WithoutCancel(ctx))
	}
}

var errNoSlot = errors.New("idempg: no transaction slot in the context (see WithTx)")

func slotOf(ctx context.Context) (*pending, error) {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	if p == nil {
		return nil, errNoSlot
	}
	return p, nil
}

// set puts tx in the slot, which must be empty.
func (p *pending) set(tx txn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tx != nil {
		_ = tx.rollback(context.Background())
		return errors.New("idempg: the work already has a transaction")
	}
	p.tx = tx
	return nil
}

// take empties the slot and returns its transaction, if any.
func (p *pending) take() txn {
	p.mu.Lock()
	defer p.mu.Unlock()
	tx := p.tx
	p.tx = nil
	return tx
}

// txOf returns the open transaction of ctx's slot, taking it out.
func txOf(ctx context.Context) txn {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	if p == nil {
		return nil
	}
	return p.take()
}

// run is Do over either kind of transaction: begin starts it in the slot.
func run(ctx context.Context, sc *idem.Scope, key string, fingerprint []byte, begin func(context.Context) (txn, error), fn func(context.Context, txn) ([]byte, error)) (idem.Result, error) {
	ctx = WithTx(ctx)
	defer End(ctx)
	return sc.Do(ctx, key, fingerprint, func(ctx context.Context) ([]byte, error) {
		tx, err := begin(ctx)
		if err != nil {
			return nil, err
		}
		value, err := fn(ctx, tx)
		if err != nil {
			End(ctx) // rolled back before the store records the failure
		}
		return value, err
	})
}

// completeIn writes the completion (args as for the complete statement)
// in tx and commits it; on any failure tx is rolled back, so that nothing
// of the work stays.
func (b *Backend) completeIn(ctx context.Context, tx txn, args []any) error {
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

// Handler gives every request to next a transaction slot ([WithTx]) and
// ends it when next returns ([End]). Put it outside the idemhttp
// middleware, which must have Options.Buffer set, so that the handler's
// writes and its response's record commit together, and the client hears
// of the response only once they have:
//
//	idempotent, _ := idemhttp.New(scope, idemhttp.Options{Tenant: user, Buffer: true})
//	mux.Handle("POST /orders", idempg.Handler(idempotent(createOrder)))
//
//	func createOrder(w http.ResponseWriter, r *http.Request) {
//		tx, err := idempg.Begin(r.Context(), pool)
//		… tx.Exec(r.Context(), "INSERT INTO orders …") …
//		w.WriteHeader(http.StatusCreated) // stored, committed, then sent
//	}
//
// A response that is not stored (a 5xx, a panic: the key is released)
// rolls the transaction back.
func Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := WithTx(r.Context())
		defer End(ctx)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
