package main

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/idemkit/idem/examples/ordersgrpc/ordersv1"
)

func startServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- serve(ctx, lis) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return lis.Addr().String()
}

// TestEachOrderOnceOverALossyConnection: half the answers lost after the
// service acted, and each order is made once.
func TestEachOrderOnceOverALossyConnection(t *testing.T) {
	addr := startServer(t)
	var out strings.Builder
	require.NoError(t, run(context.Background(), []string{"client", "-addr", addr, "-n", "30", "-lose", "0.5"}, &out))
	assert.Contains(t, out.String(), "replayed (the first answer was lost)")
	assert.Contains(t, out.String(), "orders the service holds for these 30 requests: one each")
	assert.NotContains(t, out.String(), "lost answers: 0;")
}

func TestRefusals(t *testing.T) {
	addr := startServer(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	orders := ordersv1.NewOrdersClient(conn)
	ctx := context.Background()

	_, err = orders.CreateOrder(ctx, &ordersv1.CreateOrderRequest{Item: "tea", Qty: 1, RequestId: "r1"})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))

	alice := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer alice")
	_, err = orders.CreateOrder(alice, &ordersv1.CreateOrderRequest{Item: "tea", Qty: 1})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), "no request_id and no key")

	_, err = orders.CreateOrder(alice, &ordersv1.CreateOrderRequest{Item: "tea", Qty: 1, RequestId: "r1"})
	require.NoError(t, err)
	_, err = orders.CreateOrder(alice, &ordersv1.CreateOrderRequest{Item: "coffee", Qty: 1, RequestId: "r1"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "r1 was another order")

	var header metadata.MD
	_, err = orders.CreateOrder(alice, &ordersv1.CreateOrderRequest{Item: "", Qty: 1, RequestId: "r2"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = orders.CreateOrder(alice, &ordersv1.CreateOrderRequest{Item: "", Qty: 1, RequestId: "r2"}, grpc.Header(&header))
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"true"}, header.Get("idempotent-replayed"), "a permanent error is replayed")

	list, err := orders.ListOrders(alice, &ordersv1.ListOrdersRequest{})
	require.NoError(t, err)
	assert.Len(t, list.GetOrders(), 1)
}
