package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/idemkit/idem/idempg"
)

// ledger is the fake card processor's book: one entry per charge.
type ledger interface {
	// charge charges p's card.
	charge(ctx context.Context, p payment) error
	// entries lists every charge, oldest first.
	entries(ctx context.Context) ([]entry, error)
}

type entry struct {
	payment
	At time.Time
}

// fileLedger appends each charge to a file and syncs it before the
// handler returns: the charge is done, whatever happens next. It is the
// stand-in for a card processor's API, which the consumer cannot undo or
// enlist in a transaction.
type fileLedger struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openFileLedger(dir string) (*fileLedger, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "ledger")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &fileLedger{path: path, f: f}, nil
}

func (l *fileLedger) charge(_ context.Context, p payment) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := fmt.Sprintf("%s\t%s\t%d\t%s\n", p.ID, p.Card, p.AmountCents, time.Now().UTC().Format(time.RFC3339Nano))
	if _, err := l.f.WriteString(line); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	return l.f.Sync()
}

func (l *fileLedger) entries(context.Context) ([]entry, error) { return readFileLedger(l.path) }

func (l *fileLedger) close() error { return l.f.Close() }

// readFileLedger reads the ledger file at path (none is an empty ledger).
func readFileLedger(path string) ([]entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []entry
	lines := bufio.NewScanner(f)
	for n := 1; lines.Scan(); n++ {
		fields := strings.Split(lines.Text(), "\t")
		if len(fields) != 4 {
			return nil, fmt.Errorf("%s:%d: not a ledger line", path, n)
		}
		amount, err1 := strconv.ParseInt(fields[2], 10, 64)
		at, err2 := time.Parse(time.RFC3339Nano, fields[3])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, entry{payment{ID: fields[0], Card: fields[1], AmountCents: amount}, at})
	}
	return out, lines.Err()
}

// pgLedger inserts each charge in the transaction that the message's
// outcome commits in (idempg.Begin): the charge and the record are both
// there or neither is. Its table has no unique key on purpose: a payment
// charged twice would show, not fail.
type pgLedger struct {
	pool  *pgxpool.Pool
	table string
}

func openPGLedger(ctx context.Context, pool *pgxpool.Pool, table string) (*pgLedger, error) {
	// Consumers that start together take turns: two concurrent CREATE
	// TABLE IF NOT EXISTS collide in Postgres' catalog.
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "ledger "+table); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
			payment_id text NOT NULL, card text NOT NULL, amount_cents bigint NOT NULL,
			charged_at timestamptz NOT NULL DEFAULT clock_timestamp())`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger table %s: %w", table, err)
	}
	return &pgLedger{pool: pool, table: table}, nil
}

func (l *pgLedger) charge(ctx context.Context, p payment) error {
	tx, err := idempg.Begin(ctx, l.pool) // committed with the message's record
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+l.table+` (payment_id, card, amount_cents) VALUES ($1, $2, $3)`, p.ID, p.Card, p.AmountCents)
	return err
}

func (l *pgLedger) entries(ctx context.Context) ([]entry, error) {
	rows, err := l.pool.Query(ctx, `SELECT payment_id, card, amount_cents, charged_at FROM `+l.table+` ORDER BY charged_at`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []entry
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.ID, &e.Card, &e.AmountCents, &e.At); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// chargedTwice lists the payments that have more than one entry.
func chargedTwice(entries []entry) []string {
	seen := map[string]int{}
	var twice []string
	for _, e := range entries {
		if seen[e.ID]++; seen[e.ID] == 2 {
			twice = append(twice, e.ID)
		}
	}
	return twice
}

// printLedger is the ledger command.
func printLedger(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("consumer ledger", flag.ContinueOnError)
	dir := fs.String("dir", "./data", "data `directory` of charge -dir")
	pgURL := fs.String("postgres", "", "the `URL` of charge -postgres")
	table := fs.String("table", "payments", "the ledger `table` of charge -postgres")
	quiet := fs.Bool("q", false, "print the summary only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var entries []entry
	var err error
	if *pgURL != "" {
		pool, perr := pgxpool.New(ctx, *pgURL)
		if perr != nil {
			return perr
		}
		defer pool.Close()
		entries, err = (&pgLedger{pool: pool, table: *table}).entries(ctx)
	} else {
		entries, err = readFileLedger(filepath.Join(*dir, "ledger"))
	}
	if err != nil {
		return err
	}
	var total int64
	for _, e := range entries {
		total += e.AmountCents
		if !*quiet {
			fmt.Fprintf(out, "%s  %s\n", e.At.Format("15:04:05.000"), e.payment)
		}
	}
	fmt.Fprintf(out, "%d charges, %d.%02d in all\n", len(entries), total/100, total%100)
	if twice := chargedTwice(entries); len(twice) > 0 {
		return fmt.Errorf("charged twice: %s", strings.Join(twice, ", "))
	}
	fmt.Fprintln(out, "no payment was charged twice")
	return nil
}
