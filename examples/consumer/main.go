// Command consumer charges a (fake) card once per payment message from a
// NATS JetStream stream, however often the message comes: published twice,
// redelivered after a lost ack, or redelivered because the consumer was
// killed halfway.
//
//	go run ./examples/consumer charge -dir ./data      # charges payments as they come, until Ctrl-C
//	go run ./examples/consumer publish -n 20 -dup 0.5  # 20 payments, half of them sent twice
//	go run ./examples/consumer ledger -dir ./data      # every charge, and whether any payment was charged twice
//
// All three take -nats URL (default nats://127.0.0.1:4222) and -stream
// NAME (default PAYMENTS; charge and publish create it). charge keeps the
// ledger and the idempotency records in -dir, or with -postgres URL in
// that database, where each charge commits in one transaction with its
// record.
//
// # Why no payment is charged twice
//
// The consumer keys each message by its payment id (so a payment
// published twice, under two message ids, is one key), runs the charge
// only for a new key, stores the outcome, and only then acknowledges the
// message. A redelivery of a charged payment is acknowledged without a
// charge.
//
// One window is left with -dir: the consumer dies after the card was
// charged and before the outcome was stored. The charge and the record
// are in two places, so the redelivery cannot know whether the card was
// charged. The scope reports such keys (idem.OrphanReport) instead of
// charging again: the message is terminated, and the consumer prints it
// as "unknown", for reconciliation against the ledger. Every payment is
// charged at most once, and every acknowledged one exactly once. With
// -postgres the window is closed: the ledger row and the record commit
// together or not at all, and every payment is charged exactly once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h: the usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

const usage = `usage: consumer charge|publish|ledger [flags]

  charge   charge each payment message once, until interrupted
  publish  publish payment messages, some twice on purpose
  ledger   print the ledger and check that no payment was charged twice

Run "consumer COMMAND -h" for a command's flags.`

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "charge":
		return charge(ctx, args[1:], out)
	case "publish":
		return publish(ctx, args[1:], out)
	case "ledger":
		return printLedger(ctx, args[1:], out)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(os.Stderr, usage)
		return flag.ErrHelp
	}
	fmt.Fprintln(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
