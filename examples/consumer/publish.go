package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// publish sends -n payments. With -dup, a share of them is sent a second
// time under another message id, as a publisher does that timed out
// waiting for the broker's ack and sent again with a fresh id: JetStream
// cannot tell the two apart (its deduplication goes by message id), so
// both reach the consumer, which charges once.
func publish(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("consumer publish", flag.ContinueOnError)
	b := brokerFlags(fs)
	n := fs.Int("n", 10, "how many payments")
	dup := fs.Float64("dup", 0.3, "the share of payments published twice, 0 to 1")
	prefix := fs.String("prefix", "", "payment ids are PREFIX-1, PREFIX-2, …; empty means pay-HHMMSS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 0 || *dup < 0 || *dup > 1 {
		return fmt.Errorf("-n must not be negative and -dup must be between 0 and 1")
	}
	if *prefix == "" {
		*prefix = time.Now().Format("pay-150405")
	}
	if err := b.connect(); err != nil {
		return err
	}
	defer b.close()
	if _, err := b.ensureStream(ctx); err != nil {
		return err
	}
	sent, twice := 0, 0
	for i := 1; i <= *n; i++ {
		p := payment{ID: fmt.Sprintf("%s-%d", *prefix, i), Card: fmt.Sprintf("4242-%04d", rand.IntN(10000)), AmountCents: 100 + rand.Int64N(99900)}
		body := fmt.Appendf(nil, `{"id":%q,"card":%q,"amount_cents":%d}`, p.ID, p.Card, p.AmountCents)
		copies := 1
		if rand.Float64() < *dup {
			copies, twice = 2, twice+1
		}
		for c := 1; c <= copies; c++ {
			// The message id names the publish, not the payment: a
			// retried publish with a fresh id is a second message.
			msgID := fmt.Sprintf("%s/%d", p.ID, c)
			if _, err := b.js.Publish(ctx, b.subject(), body, jetstream.WithMsgID(msgID)); err != nil {
				return fmt.Errorf("publish %s: %w", p.ID, err)
			}
			sent++
		}
	}
	fmt.Fprintf(out, "published %d payments in %d messages (%d of them twice) to %s\n", *n, sent, twice, b.subject())
	return nil
}
