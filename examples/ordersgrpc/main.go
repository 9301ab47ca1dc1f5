// Command ordersgrpc is the orders service over gRPC: CreateOrder runs
// once per request_id (AIP-155) behind idemgrpc's server interceptor, and
// the client places orders over a connection that loses answers, through
// idemgrpc's client interceptor, and checks that each was made once.
//
//	go run ./examples/ordersgrpc serve -addr 127.0.0.1:9000 &
//	go run ./examples/ordersgrpc client -addr 127.0.0.1:9000 -n 20 -lose 0.4
//
// The service keeps its orders and idempotency records in memory: a
// restart forgets both (examples/orders shows a store on disk).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "ordersgrpc:", err)
		os.Exit(1)
	}
}

const usage = `usage: ordersgrpc serve|client [flags]

  serve   the orders service
  client  place orders over a connection that loses answers, and check them`

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("ordersgrpc serve", flag.ContinueOnError)
		addr := fs.String("addr", "127.0.0.1:9000", "listen address")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		lis, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		slog.New(slog.NewTextHandler(os.Stderr, nil)).Info("ordersgrpc: listening", "addr", lis.Addr().String())
		return serve(ctx, lis)
	case "client":
		return client(ctx, args[1:], out)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(os.Stderr, usage)
		return flag.ErrHelp
	}
	fmt.Fprintln(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
