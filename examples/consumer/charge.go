package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/idemmsg"
	"github.com/idemkit/idem/idemnats"
	"github.com/idemkit/idem/idempg"
)

// charge is the charge command: it consumes the stream's payments as the
// durable consumer -durable (several processes may share it with
// -postgres) until it is interrupted.
func charge(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("consumer charge", flag.ContinueOnError)
	b := brokerFlags(fs)
	dir := fs.String("dir", "./data", "data `directory`: the ledger in DIR/ledger, the idempotency store in DIR/idem (idem dump -dir DIR/idem)")
	pgURL := fs.String("postgres", "", "keep the ledger and the records in this PostgreSQL database (postgres://…), in one transaction per charge")
	table := fs.String("table", "payments", "with -postgres: the ledger `table`; the records go in TABLE_idem")
	durable := fs.String("durable", "charger", "the durable consumer's `name`")
	ackWait := fs.Duration("ack-wait", 5*time.Second, "how long JetStream waits for an ack before it redelivers (the consumer's AckWait; short for the demo, where JetStream's default is 30s)")
	workers := fs.Int("workers", 4, "payments charged at once")
	slow := fs.Duration("slow", 0, "simulated card network time, before each charge")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long a payment's outcome is remembered")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *workers < 1 || *slow < 0 || *ackWait <= 0 {
		return errors.New("-workers must be at least 1, -slow not negative, -ack-wait positive")
	}

	opts := idem.Options{Dir: filepath.Join(*dir, "idem")}
	scopeOpts := idem.ScopeOptions{TTL: *ttl, Orphans: idem.OrphanReport}
	msgOpts := idemmsg.Options{Key: paymentKey}
	var book ledger
	if *pgURL != "" {
		pool, err := pgxpool.New(ctx, *pgURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		be, err := idempg.New(pool, idempg.Options{Table: *table + "_idem"})
		if err != nil {
			return err
		}
		if err := be.Migrate(ctx); err != nil {
			return err
		}
		if book, err = openPGLedger(ctx, pool, *table); err != nil {
			return err
		}
		// A charge commits with its record, so a crashed charge left
		// nothing behind and is safe to run again, after a short lease.
		opts.Dir, opts.Backend, opts.Lease = "", be, 3*time.Second
		scopeOpts.Orphans = idem.OrphanRerun
		msgOpts.Context = idempg.TxContext
	} else {
		files, err := openFileLedger(*dir)
		if err != nil {
			return err
		}
		defer files.close()
		book = files
	}
	st, err := idem.Open(opts)
	if err != nil {
		return err
	}
	defer st.Close()
	scope, err := st.Scope("payments", scopeOpts)
	if err != nil {
		return err
	}

	if err := b.connect(); err != nil {
		return err
	}
	defer b.close()
	stream, err := b.ensureStream(ctx)
	if err != nil {
		return err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:   *durable,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   *ackWait,
		// idemmsg decides when a failing message has had enough
		// deliveries (MaxAttempts) and terminates it.
		MaxDeliver: -1,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", *durable, err)
	}

	handler := func(ctx context.Context, d idemmsg.Delivery) ([]byte, error) {
		p, err := decodePayment(d.Body)
		if err != nil {
			return nil, idem.Permanent(err) // no redelivery makes it a payment
		}
		if *slow > 0 {
			select {
			case <-time.After(*slow):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if err := book.charge(ctx, p); err != nil {
			return nil, err
		}
		return []byte("charged"), nil
	}
	report := &reporter{out: out}
	c, err := idemnats.New(scope, stream, cons, handler, idemnats.Options{Options: msgOpts, Workers: *workers, Observe: report.delivery})
	if err != nil {
		return err
	}
	store := "the ledger and records in " + *dir
	if *pgURL != "" {
		store = "the ledger in table " + *table + ", records in " + *table + "_idem"
	}
	fmt.Fprintf(out, "charging payments from stream %s as consumer %s (%s); Ctrl-C stops\n", *b.stream, *durable, store)
	return c.Run(ctx)
}

// reporter prints a line per delivery.
type reporter struct {
	mu  sync.Mutex
	out io.Writer
}

func (r *reporter) delivery(d idemmsg.Delivery, out idemmsg.Outcome, err error) {
	p, perr := decodePayment(d.Body)
	name := p.ID
	if perr != nil {
		name = "message " + d.ID
	}
	var line string
	switch {
	case out == idemmsg.Acked:
		line = fmt.Sprintf("charged   %s", p)
	case out == idemmsg.Replayed && d.Attempt == 1:
		line = fmt.Sprintf("replayed  %s: a second message for a charged payment; acknowledged without charging", name)
	case out == idemmsg.Replayed:
		line = fmt.Sprintf("replayed  %s: redelivery %d of a charged payment; acknowledged without charging", name, d.Attempt)
	case out == idemmsg.Deferred && errors.Is(err, idem.ErrInProgress):
		line = fmt.Sprintf("deferred  %s: being charged for another message right now; it comes again in a second", name)
	case out == idemmsg.Deferred:
		line = fmt.Sprintf("deferred  %s (delivery %d): %v", name, d.Attempt, err)
	case errors.Is(err, idem.ErrOutcomeUnknown):
		line = fmt.Sprintf("unknown   %s: a consumer died while charging it, so whether the card was charged is unknown; not charged again: check the ledger", name)
	default:
		line = fmt.Sprintf("dropped   %s: %v", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(r.out, line)
}
