package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/idemkit/idem/examples/ordersgrpc/ordersv1"
	"github.com/idemkit/idem/idemgrpc"
)

// client is the client command.
func client(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ordersgrpc client", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9000", "the service's address")
	user := fs.String("user", "alice", "the caller")
	n := fs.Int("n", 10, "how many orders")
	lose := fs.Float64("lose", 0.3, "the share of answers lost after the service acted, 0 to 1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *lose < 0 || *lose >= 1 {
		return errors.New("-n must be at least 1 and -lose in [0, 1)")
	}
	flaky := &lossy{share: *lose}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The idempotent retries wrap the lossy network: each retry
		// crosses it again.
		grpc.WithChainUnaryInterceptor(
			idemgrpc.UnaryClientInterceptor(idemgrpc.ClientOptions{MaxAttempts: 20, BaseDelay: 20 * time.Millisecond}),
			flaky.intercept,
		))
	if err != nil {
		return err
	}
	defer conn.Close()
	orders := ordersv1.NewOrdersClient(conn)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*user)

	batch := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	items := make([]string, *n)
	for i := range items {
		items[i] = fmt.Sprintf("tea-%s-%d", batch, i+1)
		var header metadata.MD
		// One request_id per order, made once: every retry sends it.
		req := &ordersv1.CreateOrderRequest{Item: items[i], Qty: 1, RequestId: fmt.Sprintf("%s-%d", batch, i+1)}
		ord, err := orders.CreateOrder(ctx, req, grpc.Header(&header))
		if err != nil {
			return fmt.Errorf("order %s: %w", items[i], err)
		}
		how := "created"
		if idemgrpc.Replayed(header) {
			how = "replayed (the first answer was lost)"
		}
		fmt.Fprintf(out, "%-16s %s  %s\n", items[i], ord.GetId(), how)
	}

	list, err := orders.ListOrders(ctx, &ordersv1.ListOrdersRequest{})
	if err != nil {
		return err
	}
	made := map[string]int{}
	for _, o := range list.GetOrders() {
		made[o.GetItem()]++
	}
	twice := 0
	for _, item := range items {
		if made[item] != 1 {
			twice++
			fmt.Fprintf(out, "%s: %d orders\n", item, made[item])
		}
	}
	fmt.Fprintf(out, "lost answers: %d; orders the service holds for these %d requests: ", flaky.lost.Load(), *n)
	if twice > 0 {
		fmt.Fprintf(out, "%d requests made more than one order\n", twice)
		return fmt.Errorf("%d duplicate orders", twice)
	}
	fmt.Fprintln(out, "one each")
	return nil
}

// lossy loses a share of the answers after the service has answered: the
// caller gets Unavailable, as when a connection drops before the answer
// arrives.
type lossy struct {
	share float64
	lost  atomic.Int32
}

func (l *lossy) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil || method != ordersv1.Orders_CreateOrder_FullMethodName || rand.Float64() >= l.share {
		return err
	}
	l.lost.Add(1)
	return status.Error(codes.Unavailable, "connection lost before the answer arrived")
}
