package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idempg"
)

// The Postgres targets, in tables of their own that Close drops.
const (
	IdemPG   Kind = "idem-pg"    // Scope.Do on the idempg backend
	PGClaim  Kind = "pg-claim"   // hand-written: INSERT … ON CONFLICT DO NOTHING RETURNING, then SELECT the existing row
	IdemPGTx Kind = "idem-pg-tx" // idempg.Do: a business INSERT, and the record committed in its transaction
	PGInsert Kind = "pg-insert"  // the business INSERT alone, one transaction each: what idem-pg-tx adds to (new keys only)
)

// PostgresKinds lists the Postgres targets.
var PostgresKinds = []Kind{IdemPG, PGClaim, IdemPGTx, PGInsert}

// pgTarget is one of the Postgres targets.
type pgTarget struct {
	kind   Kind
	pool   *pgxpool.Pool
	tables []string // dropped by Close
	claim  string   // pg-claim's and pg-insert's table
	idem   *idemTarget
}

func openPostgres(kind Kind, url string) (Target, error) {
	if url == "" {
		return nil, fmt.Errorf("bench: target %s needs a Postgres URL", kind)
	}
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 64
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t := &pgTarget{kind: kind, pool: pool}
	name := func(what string) string {
		n := fmt.Sprintf("bench_%s_%08x", what, rand.Uint32())
		t.tables = append(t.tables, n)
		return n
	}
	switch kind {
	case PGClaim:
		t.claim = name("claims")
		_, err = pool.Exec(ctx, "CREATE TABLE "+t.claim+" (key bytea PRIMARY KEY, value bytea NOT NULL, expires_at timestamptz NOT NULL)")
	case PGInsert:
		t.claim = name("orders")
		_, err = pool.Exec(ctx, "CREATE TABLE "+t.claim+" (key bytea NOT NULL, value bytea NOT NULL)")
	case IdemPG, IdemPGTx:
		records := name("records")
		var be *idempg.Backend
		if be, err = idempg.New(pool, idempg.Options{Table: records}); err == nil {
			err = be.Migrate(ctx)
		}
		if err == nil && kind == IdemPGTx {
			t.claim = name("orders")
			_, err = pool.Exec(ctx, "CREATE TABLE "+t.claim+" (key bytea NOT NULL, value bytea NOT NULL)")
		}
		if err == nil {
			var st *idem.Store
			if st, err = idem.Open(idem.Options{Backend: be}); err == nil {
				var sc *idem.Scope
				if sc, err = st.Scope("bench", idem.ScopeOptions{TTL: TTL}); err == nil {
					t.idem = &idemTarget{st: st, sc: sc}
				} else {
					_ = st.Close()
				}
			}
		}
	}
	if err != nil {
		return nil, errors.Join(err, t.Close())
	}
	return t, nil
}

func (t *pgTarget) Claim(ctx context.Context, key, value []byte) (bool, error) {
	switch t.kind {
	case IdemPG:
		return t.idem.Claim(ctx, key, value)
	case IdemPGTx:
		claimed := false
		_, err := idempg.Do(ctx, t.idem.sc, t.pool, string(key), nil, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
			claimed = true
			_, err := tx.Exec(ctx, "INSERT INTO "+t.claim+" (key, value) VALUES ($1, $2)", key, value)
			return value, err
		})
		return claimed, err
	case PGInsert:
		_, err := t.pool.Exec(ctx, "INSERT INTO "+t.claim+" (key, value) VALUES ($1, $2)", key, value)
		return true, err
	}
	var inserted bool
	err := t.pool.QueryRow(ctx, "INSERT INTO "+t.claim+" (key, value, expires_at) VALUES ($1, $2, now() + $3 * interval '1 second') ON CONFLICT (key) DO NOTHING RETURNING true",
		key, value, int64(TTL.Seconds())).Scan(&inserted)
	if errors.Is(err, pgx.ErrNoRows) {
		var existing []byte
		return false, t.pool.QueryRow(ctx, "SELECT value FROM "+t.claim+" WHERE key = $1", key).Scan(&existing)
	}
	return inserted, err
}

// Close drops the target's tables and closes its pool.
func (t *pgTarget) Close() error {
	var err error
	if t.idem != nil {
		err = t.idem.Close()
	}
	for _, n := range t.tables {
		_, _ = t.pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+n)
		_, _ = t.pool.Exec(context.Background(), "DROP SEQUENCE IF EXISTS "+n+"_owner")
	}
	t.pool.Close()
	return err
}
