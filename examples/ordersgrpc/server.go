package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/idemkit/idem"
	"github.com/idemkit/idem/examples/ordersgrpc/ordersv1"
	"github.com/idemkit/idem/idemgrpc"
)

// orders is the service: its orders in memory, by caller.
type orders struct {
	ordersv1.UnimplementedOrdersServer
	mu     sync.Mutex
	byUser map[string][]*ordersv1.Order
	next   int
}

func (o *orders) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.Order, error) {
	if req.GetItem() == "" || req.GetQty() < 1 {
		// The same request always fails the same way: stored, and replayed.
		return nil, idem.Permanent(status.Error(codes.InvalidArgument, "an order needs an item and a positive qty"))
	}
	user, _ := caller(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	ord := &ordersv1.Order{Id: fmt.Sprintf("ord_%d", o.next), Item: req.GetItem(), Qty: req.GetQty()}
	o.byUser[user] = append(o.byUser[user], ord)
	return ord, nil
}

func (o *orders) ListOrders(ctx context.Context, _ *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	user, _ := caller(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	return &ordersv1.ListOrdersResponse{Orders: o.byUser[user]}, nil
}

// caller is the authenticated user: "authorization: Bearer NAME" (a
// stand-in for real authentication).
func caller(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("authorization")
	if len(v) != 1 || !strings.HasPrefix(v[0], "Bearer ") || len(v[0]) == len("Bearer ") {
		return "", errors.New("no caller")
	}
	return strings.TrimPrefix(v[0], "Bearer "), nil
}

// authenticate refuses calls without a caller, before idemgrpc.
func authenticate(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, err := caller(ctx); err != nil {
		return nil, status.Error(codes.Unauthenticated, "send authorization: Bearer NAME")
	}
	return handler(ctx, req)
}

// serve runs the service on lis until ctx ends.
func serve(ctx context.Context, lis net.Listener) error {
	st, err := idem.Open(idem.Options{InMemory: true})
	if err != nil {
		return err
	}
	defer st.Close()
	scope, err := st.Scope("orders", idem.ScopeOptions{})
	if err != nil {
		return err
	}
	idempotent, err := idemgrpc.New(scope, idemgrpc.Options{
		Methods: []string{ordersv1.Orders_CreateOrder_FullMethodName},
		Key:     idemgrpc.KeyFromField("request_id"),
		Tenant:  caller,
	})
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(authenticate, idempotent))
	ordersv1.RegisterOrdersServer(srv, &orders{byUser: map[string][]*ordersv1.Order{}})
	stop := context.AfterFunc(ctx, srv.GracefulStop)
	defer stop()
	return srv.Serve(lis)
}
