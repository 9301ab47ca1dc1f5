package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemkit/idem/idempg"
)

// pgOrders keeps the orders in a Postgres table of the database that holds
// the idempotency records. An order is inserted in the transaction that
// the key's record commits in (idempg.Begin): both are there or neither
// is, so a crash between "order written" and "response recorded" cannot
// happen, and no id needs deriving from the key.
type pgOrders struct {
	pool  *pgxpool.Pool
	table string
}

func openPGOrders(ctx context.Context, pool *pgxpool.Pool, table string) (*pgOrders, error) {
	o := &pgOrders{pool: pool, table: table}
	_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
		id text PRIMARY KEY, "user" text NOT NULL, item text NOT NULL, qty int NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`)
	return o, err
}

func (o *pgOrders) create(r *http.Request, user, _ string, item string, qty int, _ time.Duration) (order, error) {
	tx, err := idempg.Begin(r.Context(), o.pool) // committed with the response's record
	if err != nil {
		return order{}, err
	}
	id := make([]byte, 10)
	_, _ = rand.Read(id)
	ord := order{ID: "ord_" + hex.EncodeToString(id), Item: item, Qty: qty}
	err = tx.QueryRow(r.Context(), `INSERT INTO `+o.table+` (id, "user", item, qty) VALUES ($1, $2, $3, $4) RETURNING created_at`,
		ord.ID, user, item, qty).Scan(&ord.CreatedAt)
	if err != nil {
		return order{}, fmt.Errorf("insert order: %w", err)
	}
	ord.CreatedAt = ord.CreatedAt.UTC()
	return ord, nil
}

func (o *pgOrders) list(user string) ([]order, error) {
	rows, err := o.pool.Query(context.Background(), `SELECT id, item, qty, created_at FROM `+o.table+` WHERE "user" = $1 ORDER BY created_at`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []order{}
	for rows.Next() {
		var ord order
		if err := rows.Scan(&ord.ID, &ord.Item, &ord.Qty, &ord.CreatedAt); err != nil {
			return nil, err
		}
		ord.CreatedAt = ord.CreatedAt.UTC()
		out = append(out, ord)
	}
	return out, rows.Err()
}
